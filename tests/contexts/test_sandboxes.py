"""Files in the REPL: the subprocess sandbox maps the pack, the in-process one the same
file; model code sees one read-only mapping either way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.errors import SandboxError
from recursa.models.scripted import ScriptedModel
from recursa.repl import isolation
from recursa.testing import router
from tests.repl.sandboxes import started

CODE = """```repl
import json
FINAL(json.dumps({
    "type": type(context).__name__,
    "names": list(context),
    "len": len(context),
    "b": context["a/b.txt"],
    "md": context["a/c.md"],
    "size": context.size("a/c.md"),
    "pages": context.pages("a/b.txt"),
    "in": ["a/b.txt" in context, "nope" in context],
    "repr_has_text": "vault" in repr(context),
    "dict": len(dict(context)),
    "missing": context.get("nope", "default"),
}))
```"""


def answer(sandbox: str, context: Path) -> dict[str, object]:
    rlm = RLM(ScriptedModel(router([CODE])), sandbox=sandbox)
    result = rlm.completion("what is in the files?", context)
    assert result.stopped is None, result.error
    return json.loads(result.answer)  # type: ignore[no-any-return]


@pytest.mark.parametrize("sandbox", ["subprocess", "inprocess"])
def test_model_code_reads_files_by_name(folder: Path, sandbox: str) -> None:
    seen = answer(sandbox, folder)
    assert seen == {
        "type": "Files",
        "names": ["a/b.txt", "a/c.md", "notes.txt", "z.log.gz"],
        "len": 4,
        "b": "the vault code is 4471\n",
        "md": "# Heading\nnaïve café ✓\n",
        "size": len("# Heading\nnaïve café ✓\n"),
        "pages": None,
        "in": [True, False],
        "repr_has_text": False,
        "dict": 4,
        "missing": "default",
    }


LEVEL_CODE = """import json
print(json.dumps([type(context).__name__, list(context), context["a/c.md"], len(context)]))"""
EXPECTED = ["Files", ["a/b.txt", "a/c.md", "notes.txt", "z.log.gz"], "# Heading\nnaïve café ✓\n", 4]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        *(("subprocess", {"isolation": level}) for level in isolation.LEVELS),
        ("subprocess", {"channel": "stdio"}),  # no descriptors: the standalone copy
        ("docker", {}),
    ],
)
async def test_every_isolation_level_maps_the_same_pack(
    folder: Path, name: str, options: dict[str, Any]
) -> None:
    try:
        async with started(name, folder, **options) as sandbox:
            result = await sandbox.run(LEVEL_CODE, timeout=30)
    except SandboxError as exc:
        pytest.skip(f"{name} {options} is not available here: {exc}")
    assert result.error is None, result.error
    assert json.loads(result.output) == EXPECTED
