"""The sandbox where it is run from unusual places: as root of a user namespace that
maps only itself (rootless Podman/Docker, ``unshare --map-root-user``), and from an
interpreter or venv under ``/tmp``, which the sandbox's private ``/tmp`` must not hide.

Each runs a real run (or a real sandbox) in a child process started there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursa.repl import isolation

from ..repl.sandboxes import skip_unless_buildable
from .test_lifetime import NAMESPACED

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")
ROOT = Path(__file__).resolve().parents[2]

RUN = """
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, format="WARNING %(message)s")
from recursa import RLM
from recursa.models.scripted import ScriptedModel
from recursa.testing import router
cell = "```repl\\nimport os\\nFINAL(f'{os.getuid()}:{context}')\\n```"
result = RLM(ScriptedModel(router([cell])), sandbox="subprocess").completion("q", "ctx")
print(json.dumps({"answer": result.answer, "isolation": result.isolation}))
"""


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "--map-root-user", "--user", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="unshare --map-root-user --user fails here")
@pytest.mark.parametrize("level", ["auto", *isolation.LEVELS])
def test_a_run_as_root_of_a_user_namespace_falls_back_and_says_so(
    level: str, clean_env: dict[str, str], tmp_path: Path
) -> None:
    """Only root is mapped there, so the sandbox cannot drop to nobody (``chown`` to an
    unmapped uid fails with EINVAL): it runs as that root, with one warning, at the
    strongest level that works, and says which in ``result.isolation``."""
    env = {**clean_env, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    if level != "auto":
        env[isolation.ENV_VAR] = level
    proc = subprocess.run(
        ["unshare", "--map-root-user", "--user", sys.executable, "-c", RUN],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0 and "cannot be built" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"] == "0:ctx"
    chosen = result["isolation"].split(":")[0]
    assert chosen == level if level != "auto" else chosen in isolation.LEVELS
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, proc.stderr
    assert "user namespace" in warnings[0] and chosen in warnings[0]
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # the private directory and context file: gone


SANDBOX = """
import asyncio, json, sys
from recursa.context import Context
from recursa.repl.base import SandboxConfig
from recursa.repl.subprocess import SubprocessSandbox

async def host(request):
    raise RuntimeError("no host calls")

async def main(level):
    sb = SubprocessSandbox(isolation=level)
    ctx = Context("ctx")
    await sb.start(SandboxConfig(context=ctx, host=host))
    try:
        result = await sb.run(
            "import venv_probe\\nprint(venv_probe.VALUE, venv_probe.__file__)", timeout=30
        )
        print(json.dumps({"output": result.output, "error": result.error,
                          "isolation": sb.isolation}))
    finally:
        await sb.close()
        ctx.cleanup()

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def tmp_venv() -> Iterator[Path]:
    """A venv under /tmp (readable by nobody, as a root host's sandbox runs as nobody),
    holding a module of its own in its site-packages."""
    top = Path(tempfile.mkdtemp(prefix="recursa-test-venv-", dir="/tmp"))
    os.chmod(top, 0o755)
    venv = top / "venv"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        python = venv / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        Path(site, "venv_probe.py").write_text("VALUE = 'from the venv'\n")
        # the host side of recursa (not the sandbox) imports from this checkout's venv
        here = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
        Path(site, "recursa-test.pth").write_text(f"{ROOT}\n{here}\n")
        yield venv
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(params=NAMESPACED)
async def namespaced(request: pytest.FixtureRequest) -> str:
    await skip_unless_buildable(request.param)
    return str(request.param)


def test_a_venv_under_tmp_stays_importable_in_the_sandbox(
    namespaced: str, tmp_venv: Path, clean_env: dict[str, str]
) -> None:
    """Before, the private /tmp was mounted over the venv's bind: an empty site-packages."""
    proc = subprocess.run(
        [str(tmp_venv / "bin" / "python"), "-c", SANDBOX, namespaced],
        capture_output=True, text=True, env=clean_env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] is None, result
    value, path = result["output"].split()[-2:]  # "from the venv PATH"
    assert (value, Path(path).is_relative_to(tmp_venv)) == ("venv", True), result
    assert result["isolation"].startswith(namespaced)
