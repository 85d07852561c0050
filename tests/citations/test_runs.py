"""Citations in real runs: a scripted model behind a real local HTTP server, through the
API and the CLI, in the subprocess and the in-process sandbox. Model code cites with
``cite(...)`` and ``FINAL(answer, cite=[...])``; the host checks every citation against the
context itself, so a forged one (text or offsets not in the context) is never verified,
and ``require_citations`` sends an unbacked answer back, then stops with "unverified"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursa import RLM
from recursa.testing import ScriptedServer, http_router
from tests.helpers import run_cli

SANDBOXES = ["subprocess", "inprocess"]
CONTEXT = (
    "Log 2024-03-01: the backup job failed on host db-7.\n"
    "Log 2024-03-02: the backup job failed on host db-7.\n"
    "Log 2024-03-03: Café ﬁx deployed; the backup job succeeded.\n"
)


def code(*lines: str) -> str:
    return "```repl\n" + "\n".join(lines) + "\n```"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(reply: Any) -> ScriptedServer:
        server = ScriptedServer(reply).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def as_tuples(result: Any) -> list[tuple[Any, ...]]:
    return [(c.quote, c.source, c.start, c.end, c.verified) for c in result.citations]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_verified_and_unverified_citations_through_the_api(sandbox: str, serve: Any) -> None:
    server = serve(
        http_router(
            [
                code(
                    "first = cite('the backup job failed on host db-7')",  # appears twice
                    "span = cite((0, 3))",
                    "print(repr(first), repr(span))",
                ),
                code(
                    "FINAL('db-7 failed twice', cite=[",
                    "    'BACKUP job failed on host\\n db-7.\\nLog 2024-03-02',",  # across lines
                    "    'cafe\\u0301 fix deployed',",  # Unicode normalisation
                    "    'the backup job failed on host db-9',",  # forged: not in the context
                    "    (150, 1000),",  # bogus offsets: past the end
                    "    {'quote': 'Log 2024-03-01', 'start': 52, 'end': 66},",  # lying offsets
                    "])",
                ),
            ]
        )
    )
    result = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("db-7 failed twice", None)
    first = CONTEXT.index("the backup job failed on host db-7")
    # the quote is there twice; the first occurrence is chosen
    assert CONTEXT.index("the backup job failed on host db-7", first + 1) > first
    across = CONTEXT.index("backup job failed on host db-7.\nLog 2024-03-02")
    cafe = CONTEXT.index("Café ﬁx deployed")
    assert as_tuples(result) == [
        ("the backup job failed on host db-7", "context", first, first + 34, True),
        ("Log", "context", 0, 3, True),
        ("backup job failed on host db-7.\nLog 2024-03-02", "context", across, across + 46, True),
        ("Café ﬁx deployed", "context", cafe, cafe + 16, True),
        ("the backup job failed on host db-9", "context", None, None, False),
        ("", "context", 150, 1000, False),
        ("Log 2024-03-01", "context", 52, 66, False),
    ]
    reasons = [c.reason or "" for c in result.citations]
    assert reasons[:4] == [""] * 4
    assert "not found" in reasons[4] and "past the end" in reasons[5]
    assert "is not the quote" in reasons[6]
    # cite() returned the cited text; the REPL was told which citations failed
    cell_outputs = [
        m["content"] for b in server.bodies for m in b["messages"] if m["role"] == "user"
    ]
    assert any("'the backup job failed on host db-7' 'Log'" in c for c in cell_outputs)
    assert result.to_dict()["citations"][0] == {
        "quote": "the backup job failed on host db-7", "source": "context", "start": first,
        "end": first + 34, "page": None, "item": None, "verified": True, "reason": None,
        "before": CONTEXT[:first], "after": CONTEXT[first + 34 :],  # all of this short text
    }  # fmt: skip


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_list_and_dict_contexts_and_the_trace(sandbox: str, serve: Any, tmp_path: Path) -> None:
    server = serve(http_router([code("FINAL('ok', cite=[(1, 0, 5), (1, 'THIRD'), 'zzz'])")]))
    trace = tmp_path / "t.jsonl"
    result = RLM("openai/s", base_url=server.url, sandbox=sandbox, trace=trace).completion(
        "q", ["first doc", "second doc, third line"]
    )
    assert as_tuples(result) == [
        ("secon", "context[1]", 0, 5, True),
        ("third", "context[1]", 12, 17, True),
        ("zzz", "context", None, None, False),
    ]
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    end = events[-1]
    assert end["type"] == "run_end" and end["citations"] == result.to_dict()["citations"]
    node_end = next(e for e in events if e["type"] == "node_end")
    assert node_end["citations"] == end["citations"]
    files = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion(
        "q", {"0": "nothing", "1": "second doc, third line"}
    )
    # a dict is cited by key: the item 1 names the key "1"
    assert [(c.quote, c.source, c.item, c.verified) for c in files.citations] == [
        ("secon", "1", "1", True),
        ("third", "1", "1", True),
        ("zzz", "context", None, False),
    ]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_forging_repl_is_refused_cleanly(sandbox: str, serve: Any) -> None:
    """Model code that goes around cite() to the host call itself: oversized, too many,
    ill-typed or self-verified citations are refused; the run survives and answers."""
    attacks = [
        "cite('x' * 5000)",  # the REPL refuses an oversized quote
        "FINAL('a', cite=['q%d' % i for i in range(65)])",  # and too many at once
        "cite(3.5)",
        "send('cite', {'citations': [{'quote': 'y' * 5000}]})",  # the host refuses them too
        "send('cite', {'citations': [{'quote': 'Log'}] * 65})",
        "send('cite', {'citations': [{'quote': 'Log', 'verified': True}]})",
        "send('cite', {'citations': [{'start': True, 'end': 3}]})",
        "send('cite', {'citations': [{'quote': 5}]})",
        "send('cite', {'citations': 'Log'})",
        "send('cite', {'citations': [{'quote': 'Log', 'item': [1]}]})",
        "send('cite', {'citations': [{'quote': 'c%d' % i} for i in range(64)]})",  # 64: taken
        "cite('one more')",  # but the answer's 65th is refused
    ]
    lines = ["send = cite.__self__.call_host" if sandbox == "inprocess" else "",
             "errors = []"]  # fmt: skip
    if sandbox == "subprocess":  # the worker's own link to the host
        lines[0] = "send = cite.__self__.call_host"
    for attack in attacks:
        lines += ["try:", f"    {attack}", "except BaseException as exc:",
                  "    errors.append(type(exc).__name__ + ': ' + str(exc)[:120])"]  # fmt: skip
    lines += ["print('\\n'.join(errors))", "print(len(errors))"]
    replies = [code(*lines), code("FINAL('survived')")]
    server = serve(http_router(replies))
    result = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("survived", None)
    feedback = server.bodies[1]["messages"][-1]["content"]
    assert "\n11\n" in feedback, feedback  # every attack but the 64 distinct quotes failed
    for expected in (
        "a quote is at most 4,000 characters",
        "at most 64 citations at once",
        "cite takes a quote",
        "a quote is over 4,000 characters",
        "more than 64 citations",
        "unknown field 'verified'",
        "'start' must be int",
        "'quote' must be str",
        "'citations' must be list",
        "'item' must be str or int",
        "at most 64 citations per answer",
    ):
        assert expected in feedback, expected
    assert len(result.citations) == 64 and not any(c.verified for c in result.citations)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_require_citations_retries_then_accepts(sandbox: str, serve: Any) -> None:
    server = serve(
        http_router(
            [
                code("FINAL('db-7')"),  # no citation
                code("FINAL('db-7', cite='the job failed on db-7')"),  # forged
                code("FINAL('db-7', cite='failed on host db-7')"),  # verified
            ]
        )
    )
    rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox, require_citations=True)
    result = rlm.completion("q", CONTEXT)
    assert (result.answer, result.stopped, result.iterations) == ("db-7", None, 3)
    assert [c.verified for c in result.citations] == [False, True]
    told = [b["messages"][-1]["content"] for b in server.bodies[1:]]
    assert "the answer has no citation" in told[0] and "requires evidence" in told[0]
    assert "no citation of the answer was verified" in told[1]
    assert '"the job failed on db-7": not found in the context' in told[1]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_require_citations_stops_unverified(sandbox: str, serve: Any) -> None:
    server = serve(http_router([code("FINAL('made up', cite='a fact nobody wrote')")]))
    rlm = RLM("openai/s", base_url=server.url, sandbox=sandbox, require_citations=True)
    result = rlm.completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("made up", "unverified")
    assert result.iterations == 4  # the answer, then 3 retries
    assert "no citation of the answer was verified" in (result.error or "")
    # without the policy the same answer is accepted, its citation marked unverified
    plain = RLM("openai/s", base_url=server.url, sandbox=sandbox).completion("q", CONTEXT)
    assert (plain.stopped, [c.verified for c in plain.citations]) == (None, [False])


def test_a_child_cites_its_own_context_only(serve: Any, tmp_path: Path) -> None:
    """A child's citations are checked against the context it was given and stay on its
    node_end: the root's result never inherits them."""
    replies = {
        "Query: outer": [code("a = rlm_query('inner', context='private note: 99')", "FINAL(a)")],
        "inner": [code("FINAL('99', cite='private note: 99')")],
    }
    server = serve(http_router(replies))
    trace = tmp_path / "t.jsonl"
    result = RLM(
        "openai/s", base_url=server.url, sandbox="inprocess", max_depth=2, trace=trace
    ).completion("outer", CONTEXT)
    assert (result.answer, result.citations) == ("99", [])
    ends = [json.loads(x) for x in trace.read_text().splitlines()]
    child = [e for e in ends if e["type"] == "node_end" and e["depth"] == 1]
    assert child[0]["citations"][0]["verified"] is True
    assert "citations" not in ends[-1]


# -- the CLI ---------------------------------------------------------------------------
def cli(server: ScriptedServer, context: Path, sandbox: str, *extra: str) -> list[str]:
    return ["run", "q", "-c", str(context), "--model", "openai/s", "--base-url", server.url,
            "--sandbox", sandbox, *extra]  # fmt: skip


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_cli_prints_citations_and_json_has_them(
    sandbox: str, serve: Any, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    path = tmp_path / "log.txt"
    path.write_text(CONTEXT, encoding="utf-8")
    server = serve(
        http_router([code("FINAL('db-7', cite=['failed on host db-7', 'host db-9 is down'])")])
    )
    plain = run_cli(cli(server, path, sandbox), clean_env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == [
        "db-7",
        "",
        '[1] context: "failed on host db-7"',
        '[2] context: "host db-9 is down"  [unverified: not found in the context, exactly or '
        "normalised]",
    ]
    proc = run_cli([*cli(server, path, sandbox), "--json"], clean_env)
    obj = json.loads(proc.stdout)
    start = CONTEXT.index("failed on host db-7")
    assert obj["citations"][0] == {
        "quote": "failed on host db-7", "source": "context", "start": start,
        "end": start + 19, "page": None, "item": None, "verified": True, "reason": None,
        "before": CONTEXT[:start], "after": CONTEXT[start + 19 :],
    }  # fmt: skip
    assert obj["citations"][1]["verified"] is False and obj["exit_code"] == 0


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_cli_requires_citations_and_exits_3(
    sandbox: str, serve: Any, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    path = tmp_path / "log.txt"
    path.write_text(CONTEXT, encoding="utf-8")
    server = serve(http_router([code("FINAL('db-7')")]))
    args = cli(server, path, sandbox, "--require-citations")
    proc = run_cli([*args, "--json"], clean_env)
    obj = json.loads(proc.stdout)
    assert (proc.returncode, obj["exit_code"], obj["stopped"]) == (3, 3, "unverified")
    assert obj["answer"] == "db-7" and obj["citations"] == []
    plain = run_cli(args, clean_env)
    assert plain.returncode == 3
    assert "stopped without an answer (unverified): the answer has no citation" in plain.stderr


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_big_file_context_is_searched_across_block_boundaries(
    sandbox: str, serve: Any, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A file context over one block (1 Mi characters): the host reads it in blocks, and a
    quote across the boundary is found, exactly and normalised."""
    boundary = 1 << 20
    head = "é" * 10 + "a" * (boundary - 10 - 8)
    body = head + "NEEDLE in\nthe haystack" + "b" * 5000 + "the LAST line\n"
    path = tmp_path / "big.txt"
    path.write_text(body, encoding="utf-8")
    assert body.index("NEEDLE") < boundary < body.index("haystack")
    server = serve(
        http_router(
            [
                code(
                    "FINAL('found', cite=['NEEDLE in\\nthe hay', 'needle IN the haystack', "
                    "(len(context) - 14, len(context)), 'NEEDLE in the hayloft'])"
                )
            ]
        )
    )
    proc = run_cli([*cli(server, path, sandbox), "--json"], clean_env)
    assert proc.returncode == 0, proc.stderr
    got = [(c["quote"], c["start"], c["verified"]) for c in json.loads(proc.stdout)["citations"]]
    at = body.index("NEEDLE")
    assert got == [
        ("NEEDLE in\nthe hay", at, True),
        ("NEEDLE in\nthe haystack", at, True),
        ("the LAST line\n", len(body) - 14, True),
        ("NEEDLE in the hayloft", None, False),
    ]


def test_the_cli_marks_an_item_of_a_text_context_unverified(
    serve: Any, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A file given with -c is text: an (item, quote) citation names no item of it, and is
    printed marked unverified, with the reason."""
    path = tmp_path / "docs.txt"
    path.write_text(json.dumps({"a.txt": "alpha", "b.txt": "the beta file"}))
    server = serve(http_router([code("FINAL('b', cite=[('b.txt', 'BETA file'), 'BETA file'])")]))
    proc = run_cli(cli(server, path, "inprocess"), clean_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == [
        '[1] context: "BETA file"  [unverified: the context is text: cite a quote or '
        "(start, end), without an item]",
        '[2] context: "beta file"',
    ]


def test_require_citations_when_the_iterations_run_out(serve: Any) -> None:
    """The last turn has no turn after it to cite in: an answer without a verified
    citation then ends the run "unverified" (not "iterations"), the answer kept."""
    server = serve(http_router([code("FINAL('db-7')"), "FINAL(db-7 for sure)"]))
    rlm = RLM(
        "openai/s", base_url=server.url, sandbox="inprocess", require_citations=True,
        max_iterations=1,
    )  # fmt: skip
    result = rlm.completion("q", CONTEXT)
    assert (result.answer, result.stopped) == ("db-7 for sure", "unverified")
    assert result.error == "the answer has no citation (the iterations ran out)"
