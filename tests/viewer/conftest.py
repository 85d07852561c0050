"""Hand-written traces for the viewer and exporter tests, built from docs/trace.md.

Each event is checked against the schema as it is made (``recursa.events``: a key
that no event dataclass has is an error) and written as the tracer writes it:
``run_id`` on ``run_start``/``run_end`` only, null and false optional fields left out.

``write_depth2_trace`` writes a small but realistic run: the root ``n0`` takes
two iterations; in the second one a cell spawns a child RLM ``n1`` (whose cell
makes an ``llm_query`` sub-call charged at depth 2) and runs an ``llm_batch`` of
three overlapping sub-calls. ``write_big_trace`` writes a run of at least
10,000 events for the responsiveness checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recursa.events import encode, parse_event
from recursa.trace import REQUIRED_FIELDS
from recursa.viewer import TraceServer, make_server

T0 = 1_767_225_600.0  # 2026-01-01, so the tests never depend on the clock
RUN_ID = "r-2026-demo"
ROOT_MODEL = "openai/gpt-5-mini"
SUB_MODEL = "openai/gpt-5-nano"
PRICES = {ROOT_MODEL: (0.25e-6, 2.0e-6), SUB_MODEL: (0.05e-6, 0.4e-6)}

Event = dict[str, Any]


def _usage(model: str, inp: int, out: int, cached: int = 0) -> dict[str, Any]:
    price_in, price_out = PRICES.get(model, (0.0, 0.0))
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cached_tokens": cached,
        "calls": 1,
        "cost_usd": round(inp * price_in + out * price_out, 8),
    }


@dataclass
class TraceBuilder:
    """Emits schema-v1 events and keeps the usage totals that node_end/run_end report."""

    run_id: str = RUN_ID
    events: list[Event] = field(default_factory=list)
    _calls: int = 0
    _nodes: int = 0

    def call_id(self) -> str:
        self._calls += 1
        return f"c{self._calls - 1}"

    def node_id(self) -> str:
        self._nodes += 1
        return f"n{self._nodes - 1}"

    def emit(
        self, type: str, t: float, node_id: str, parent_id: str | None, depth: int, **fields: Any
    ) -> Event:
        event: Event = {
            "v": 1,
            "type": type,
            "t": round(t, 6),
            "node_id": node_id,
            "parent_id": parent_id,
            "depth": depth,
        }
        if type in ("run_start", "run_end"):
            event["run_id"] = self.run_id
        event.update(fields)
        event = {
            k: v
            for k, v in event.items()
            if k in REQUIRED_FIELDS or (v is not None and v is not False)
        }
        parsed = parse_event(event)
        assert parsed is not None, event
        unknown = set(event) - set(encode(parsed))
        assert not unknown, f"{type}: not in the schema: {sorted(unknown)}"
        self.events.append(event)
        return event

    def model_call(
        self,
        node: str,
        parent: str | None,
        depth: int,
        t0: float,
        duration: float,
        *,
        purpose: str,
        model: str,
        tokens: tuple[int, int],
        iteration: int | None = None,
        call_id: str | None = None,
        **fields: Any,
    ) -> Event:
        return self.emit(
            "model_call",
            t0 + duration,
            node,
            parent,
            depth,
            call_id=call_id or self.call_id(),
            purpose=purpose,
            iteration=iteration,
            model=model,
            t0=round(t0, 6),
            duration_s=round(duration, 6),
            usage=_usage(model, *tokens),
            cached=False,
            **fields,
        )

    def usage_of(self, node_ids: set[str] | None = None) -> dict[str, Any]:
        total = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "calls": 0}
        cost = 0.0
        for e in self.events:
            if e["type"] != "model_call" or (node_ids is not None and e["node_id"] not in node_ids):
                continue
            for key in ("input_tokens", "output_tokens", "cached_tokens"):
                total[key] += e["usage"][key]
            total["calls"] += 1
            cost += e["usage"]["cost_usd"]
        return {**total, "cost_usd": round(cost, 8)}

    def breakdown(self, key: str) -> dict[str, Any]:
        groups: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e["type"] != "model_call":
                continue
            g = groups.setdefault(
                str(e[key]),
                {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cached_tokens": 0,
                    "calls": 0,
                    "cost_usd": 0.0,
                },
            )
            for k in ("input_tokens", "output_tokens", "cached_tokens"):
                g[k] += e["usage"][k]
            g["calls"] += 1
            g["cost_usd"] = round(g["cost_usd"] + e["usage"]["cost_usd"], 8)
        return groups

    def write(self, path: Path, malformed_after: int | None = None) -> Path:
        lines = [json.dumps(e, ensure_ascii=False) for e in self.events]
        if malformed_after is not None:
            lines.insert(malformed_after, '{"v": 1, "type": "cell", "code": "print(1)", "t": 17')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


ROOT_QUERY = "Which cities in the field reports mention flooding, and how often?"
CONTEXT = {"type": "list", "chars": 1_254_880, "items": 40}

TURN1 = """I'll look at the shape of the context first.

```repl
print(type(context), len(context))
for i, doc in enumerate(context[:3]):
    print(i, len(doc), repr(doc[:60]))
```

```repl
meta = context["meta"]  # the documents are a list, not a dict
```"""

CELL1 = """print(type(context), len(context))
for i, doc in enumerate(context[:3]):
    print(i, len(doc), repr(doc[:60]))"""

CELL1_OUT = """<class 'list'> 40
0 31022 'Field report #1 — Rotterdam, 3 March. Water levels along the '
1 29871 'Field report #2 — Hamburg, 5 March. Storm surge warnings were'
2 33410 'Field report #3 — Lyon, 9 March. No significant rainfall; the'"""

CELL1B = 'meta = context["meta"]  # the documents are a list, not a dict'
CELL1B_ERR = """Traceback (most recent call last):
  File "<cell>", line 1, in <module>
TypeError: list indices must be integers or slices, not str"""

TURN2 = """Forty reports of ~30K characters each. I'll delegate a summary of the first ten to a
child RLM and count flooding mentions per city with a batch of sub-calls.

```repl
summary = rlm_query("Summarise the flooding events in these reports, by city.", context=context[:10])
print(summary[:200])
```

```repl
import re
cities = ["Rotterdam", "Hamburg", "Lyon"]
prompts = [f"How many reports mention flooding in {c}? Reply with a number." for c in cities]
counts = llm_batch(prompts)
result = {c: int(re.sub(r"\\D", "", n) or 0) for c, n in zip(cities, counts)}
FINAL_VAR("result")
```"""

CELL2A = """summary = rlm_query("Summarise the flooding events in these reports, by city.", context=context[:10])
print(summary[:200])"""

CELL2B = """import re
cities = ["Rotterdam", "Hamburg", "Lyon"]
prompts = [f"How many reports mention flooding in {c}? Reply with a number." for c in cities]
counts = llm_batch(prompts)
result = {c: int(re.sub(r"\\D", "", n) or 0) for c, n in zip(cities, counts)}
FINAL_VAR("result")"""

CHILD_QUERY = "Summarise the flooding events in these reports, by city."
CHILD_TURN = """```repl
flooded = [d for d in context if "flood" in d.lower()]
summary = llm_query("Summarise by city:\\n" + "\\n---\\n".join(d[:2000] for d in flooded))
print(summary)
FINAL(summary)
```"""
CHILD_CELL = """flooded = [d for d in context if "flood" in d.lower()]
summary = llm_query("Summarise by city:\\n" + "\\n---\\n".join(d[:2000] for d in flooded))
print(summary)
FINAL(summary)"""
CHILD_OUT = "Rotterdam: river flooding on 3 and 12 March. Hamburg: storm surge flooding on 5 March."
ROOT_ANSWER = "{'Rotterdam': 2, 'Hamburg': 1, 'Lyon': 0}"


def build_depth2_trace() -> TraceBuilder:
    b = TraceBuilder()
    t = T0
    b.emit(
        "run_start", t, "n0", None, 0,
        query=ROOT_QUERY, model=ROOT_MODEL, sub_model=SUB_MODEL, max_depth=2,
        max_iterations=30,
        budget={"usd": 1.0, "tokens": 2_000_000, "seconds": 600, "calls": 500},
        sandbox="subprocess", context=CONTEXT, version="0.1.0",
    )  # fmt: skip
    root = b.node_id()
    b.emit(
        "node_start", t, root, None, 0,
        query=ROOT_QUERY, context=CONTEXT, model=ROOT_MODEL, parent_call_id=None,
    )  # fmt: skip
    # iteration 1: look at the context; a second cell fails
    messages1 = [
        {"role": "system", "content": "You are the root of a Recursive Language Model. ..."},
        {"role": "user", "content": f"Query: {ROOT_QUERY}\ncontext: list of 40 str"},
    ]
    b.model_call(root, None, 0, t + 0.01, 2.4, purpose="turn", model=ROOT_MODEL,
                 tokens=(1850, 120), iteration=1, messages=messages1, response=TURN1)  # fmt: skip
    b.emit("cell", t + 2.5, root, None, 0, iteration=1, index=0, code=CELL1, output=CELL1_OUT,
           error=None, t0=t + 2.42, duration_s=0.08, final=None, timed_out=False,
           restarted=False)  # fmt: skip
    b.emit("cell", t + 2.53, root, None, 0, iteration=1, index=1, code=CELL1B, output="",
           error=CELL1B_ERR, t0=t + 2.5, duration_s=0.03, final=None, timed_out=False,
           restarted=False)  # fmt: skip
    # iteration 2: a child RLM, then a batch of three sub-calls, then FINAL_VAR
    t = T0 + 2.6
    messages2 = [
        {
            "role": "user",
            "content": "Output of cell 0:\n" + CELL1_OUT + "\n\nCell 1 "
            "raised TypeError: list indices must be integers or slices, not str",
        }
    ]
    b.model_call(root, None, 0, t, 3.1, purpose="turn", model=ROOT_MODEL, tokens=(2410, 260),
                 iteration=2, messages=messages2, response=TURN2)  # fmt: skip
    cell_a_t0 = t + 3.15
    rlm_call = b.call_id()
    child = b.node_id()
    ct = cell_a_t0 + 0.02
    b.emit("node_start", ct, child, root, 1, query=CHILD_QUERY,
           context={"type": "list", "chars": 311_520, "items": 10}, model=ROOT_MODEL,
           parent_call_id=rlm_call)  # fmt: skip
    b.model_call(child, root, 1, ct + 0.01, 1.9, purpose="turn", model=ROOT_MODEL,
                 tokens=(1420, 95), iteration=1,
                 messages=[{"role": "system", "content": "You are a child RLM ..."},
                           {"role": "user", "content": f"Query: {CHILD_QUERY}"}],
                 response=CHILD_TURN)  # fmt: skip
    cc_t0 = ct + 1.95
    llm_call = b.call_id()
    b.model_call(child, root, 2, cc_t0 + 0.05, 1.6, purpose="sub", model=SUB_MODEL,
                 tokens=(6120, 48), call_id=llm_call)  # fmt: skip
    b.emit("subcall", cc_t0 + 1.66, child, root, 1, call_id=llm_call, kind="llm", iteration=1,
           batch_id=None, index=0, prompt="Summarise by city:\nField report #1 — Rotterdam …",
           answer=CHILD_OUT, model=SUB_MODEL, t0=cc_t0 + 0.05, duration_s=1.61, error=None,
           child_node_id=None)  # fmt: skip
    b.emit("cell", cc_t0 + 1.7, child, root, 1, iteration=1, index=0, code=CHILD_CELL,
           output=CHILD_OUT, error=None, t0=cc_t0, duration_s=1.7, final=True,
           timed_out=False, restarted=False)  # fmt: skip
    child_end = cc_t0 + 1.72
    b.emit("node_end", child_end, child, root, 1, answer=CHILD_OUT, iterations=1, stopped=None,
           usage={**b.usage_of({child})}, duration_s=round(child_end - ct, 6),
           error=None)  # fmt: skip
    b.emit("subcall", child_end + 0.01, root, None, 0, call_id=rlm_call, kind="rlm",
           iteration=2, batch_id=None, index=0, prompt=CHILD_QUERY, answer=CHILD_OUT,
           model=ROOT_MODEL, t0=cell_a_t0 + 0.01, duration_s=round(child_end - cell_a_t0, 6),
           error=None, child_node_id=child)  # fmt: skip
    cell_a_end = child_end + 0.02
    b.emit("cell", cell_a_end, root, None, 0, iteration=2, index=0, code=CELL2A,
           output=CHILD_OUT, error=None, t0=cell_a_t0, duration_s=round(cell_a_end - cell_a_t0, 6),
           final=None, timed_out=False, restarted=False)  # fmt: skip
    # the batch: three overlapping sub-calls
    cell_b_t0 = cell_a_end + 0.01
    answers = ["2", "1", "0"]
    spans = [(0.02, 1.2), (0.03, 1.8), (0.04, 0.9)]
    for i, (city, (start, dur)) in enumerate(zip(["Rotterdam", "Hamburg", "Lyon"], spans,
                                                  strict=True)):  # fmt: skip
        cid = b.call_id()
        s = cell_b_t0 + start
        b.model_call(root, None, 1, s, dur, purpose="sub", model=SUB_MODEL,
                     tokens=(42, 2), call_id=cid)  # fmt: skip
        b.emit("subcall", s + dur, root, None, 0, call_id=cid, kind="llm", iteration=2,
               batch_id="b0", index=i,
               prompt=f"How many reports mention flooding in {city}? Reply with a number.",
               answer=answers[i], model=SUB_MODEL, t0=s, duration_s=dur, error=None,
               child_node_id=None)  # fmt: skip
    cell_b_end = cell_b_t0 + 1.9
    b.emit("cell", cell_b_end, root, None, 0, iteration=2, index=1, code=CELL2B, output="",
           error=None, t0=cell_b_t0, duration_s=1.9, final=True, timed_out=False,
           restarted=False)  # fmt: skip
    end = cell_b_end + 0.01
    usage = b.usage_of()
    b.emit("node_end", end, root, None, 0, answer=ROOT_ANSWER, iterations=2, stopped=None,
           usage=usage, duration_s=round(end - T0, 6), error=None)  # fmt: skip
    b.emit("run_end", end + 0.001, root, None, 0, answer=ROOT_ANSWER,
           usage={**usage, "by_model": b.breakdown("model"), "by_depth": b.breakdown("depth")},
           cost_usd=usage["cost_usd"], iterations=2, depth_reached=2, stopped=None, error=None,
           duration_s=round(end - T0, 6), isolation="process: rlimits")  # fmt: skip
    return b


def write_depth2_trace(path: Path, *, malformed: bool = False) -> Path:
    """The depth-2 run; ``malformed`` inserts a cut-off line after the 6th event."""
    return build_depth2_trace().write(path, malformed_after=6 if malformed else None)


def write_big_trace(path: Path, n_events: int = 10_000) -> Path:
    """A finished run of at least ``n_events`` events: a root whose iterations each run an
    ``rlm_batch`` of four children, each of which runs ``llm_batch`` calls of eight."""
    b = TraceBuilder(run_id="r-big")
    t = T0
    b.emit("run_start", t, "n0", None, 0, query="Find every contract clause about liability.",
           model=ROOT_MODEL, sub_model=SUB_MODEL, max_depth=2, max_iterations=500,
           budget={"usd": 50.0, "tokens": None, "seconds": None, "calls": None},
           sandbox="subprocess",
           context={"type": "str", "chars": 48_000_000, "items": None},
           version="0.1.0")  # fmt: skip
    root = b.node_id()
    b.emit("node_start", t, root, None, 0, query="Find every contract clause about liability.",
           context={"type": "str", "chars": 48_000_000, "items": None}, model=ROOT_MODEL,
           parent_call_id=None)  # fmt: skip
    it = 0
    while len(b.events) < n_events - 4:
        it += 1
        b.model_call(root, None, 0, t, 1.5, purpose="turn", model=ROOT_MODEL,
                     tokens=(3000 + it * 50, 180), iteration=it,
                     messages=[{"role": "user", "content": f"Output of iteration {it - 1} …"}],
                     response=f"```repl\nparts = chunks[{it * 4}:{it * 4 + 4}]\n"
                     "found = rlm_batch([f'Liability clauses in part {i}' for i in range(4)], "
                     "parts)\nprint(found)\n```")  # fmt: skip
        t += 1.5
        cell_t0 = t
        found = []
        for k in range(4):
            call = b.call_id()
            child = b.node_id()
            ct = cell_t0 + 0.01 * k
            b.emit("node_start", ct, child, root, 1, query=f"Liability clauses in part {k}",
                   context={"type": "str", "chars": 120_000, "items": None}, model=ROOT_MODEL,
                   parent_call_id=call)  # fmt: skip
            for ci in (1, 2):
                b.model_call(child, root, 1, ct, 0.8, purpose="turn", model=ROOT_MODEL,
                             tokens=(900, 70), iteration=ci,
                             messages=[{"role": "user", "content": "…"}],
                             response="```repl\nans = llm_batch(prompts)\n```")  # fmt: skip
                ct += 0.8
                for j in range(8):
                    sub = b.call_id()
                    s, d = ct + 0.01 * j, 0.4 + 0.05 * j
                    b.model_call(child, root, 2, s, d, purpose="sub", model=SUB_MODEL,
                                 tokens=(1500, 20), call_id=sub)  # fmt: skip
                    b.emit("subcall", s + d, child, root, 1, call_id=sub, kind="llm",
                           iteration=ci, batch_id=f"{child}-b{ci}", index=j,
                           prompt=f"Does chunk {j} discuss liability? Quote it.",
                           answer="No." if j % 3 else "Yes: 'The supplier shall be liable…'",
                           model=SUB_MODEL, t0=s, duration_s=d, error=None,
                           child_node_id=None)  # fmt: skip
                b.emit("cell", ct + 0.8, child, root, 1, iteration=ci, index=0,
                       code="ans = llm_batch(prompts)\nprint(sum('Yes' in a for a in ans))",
                       output="3", error=None, t0=ct, duration_s=0.8,
                       final=ci == 2, timed_out=False,
                       restarted=False)  # fmt: skip
                ct += 0.8
            b.emit("node_end", ct, child, root, 1, answer="3 clauses", iterations=2,
                   stopped=None, usage=b.usage_of({child}), duration_s=1.6 * 2,
                   error=None)  # fmt: skip
            b.emit("subcall", ct, root, None, 0, call_id=call, kind="rlm", iteration=it,
                   batch_id=f"rb{it}", index=k, prompt=f"Liability clauses in part {k}",
                   answer="3 clauses", model=ROOT_MODEL, t0=cell_t0, duration_s=ct - cell_t0,
                   error=None, child_node_id=child)  # fmt: skip
            found.append(ct)
        t = max(found) + 0.05
        b.emit("cell", t, root, None, 0, iteration=it, index=0, code="found = rlm_batch(...)",
               output="['3 clauses'] * 4", error=None, t0=cell_t0, duration_s=t - cell_t0,
               final=None, timed_out=False, restarted=False)  # fmt: skip
    usage = b.usage_of()
    b.emit("node_end", t, root, None, 0, answer="Liability clauses: …", iterations=it,
           stopped="iterations", usage=usage, duration_s=t - T0, error=None)  # fmt: skip
    b.emit("run_end", t, root, None, 0, answer="Liability clauses: …",
           usage={**usage, "by_model": b.breakdown("model"), "by_depth": b.breakdown("depth")},
           cost_usd=usage["cost_usd"], iterations=it, depth_reached=2, stopped="iterations",
           error=None, duration_s=t - T0)  # fmt: skip
    return b.write(path)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def depth2_trace(tmp_path: Path) -> Path:
    return write_depth2_trace(tmp_path / "depth2.jsonl")


@pytest.fixture
def big_trace(tmp_path: Path) -> Path:
    return write_big_trace(tmp_path / "big.jsonl")


class Traces:
    """The builders, for tests that lay out their own runs (``traces`` fixture)."""

    build_depth2 = staticmethod(build_depth2_trace)
    write_depth2 = staticmethod(write_depth2_trace)
    write_big = staticmethod(write_big_trace)


@pytest.fixture
def traces() -> type[Traces]:
    return Traces


@pytest.fixture
def serve_path() -> Iterator[Callable[[Path], tuple[TraceServer, str]]]:
    """Starts viewer servers in threads; each is shut down and closed afterwards."""
    import threading

    started: list[tuple[TraceServer, threading.Thread]] = []

    def start(path: Path) -> tuple[TraceServer, str]:
        server, url = make_server(path, 0)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((server, thread))
        return server, url

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    """A real ``recursa bench`` output directory: sniah at 2k, 3 items, run by ``rlm``
    (traces, a cited needle), ``rlm-nosub`` (no llm_query: stops on iterations) and
    ``base`` (no trace), against the scripted local server."""
    from concurrent.futures import ThreadPoolExecutor

    from recursa.bench.methods import RLMMethod
    from recursa.bench.runner import run_bench
    from recursa.bench.tasks import SNIAHTask
    from recursa.testing import ScriptedServer
    from tests.benchrun.script import reply

    out = tmp_path / "bench-out"
    with ScriptedServer(reply) as server, ThreadPoolExecutor(1) as pool:
        # in a thread: a test's browser (Playwright) may hold this thread's event loop
        pool.submit(
            run_bench,
            [SNIAHTask(essay_fallback=True)],
            ["base", "rlm", RLMMethod(name="rlm-nosub", max_depth=0)],
            "openai/gpt-5-mini",
            base_url=server.url,
            lengths=["2k"],
            n=3,
            out_dir=out,
            sandbox="inprocess",
            progress=False,
            max_iterations=3,
        ).result()
    return out


#: A tool argument that is markup: the viewer must show it as text, never run it.
SCRIPT_ARGUMENT = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
TOOL_PROMPT = "Which cities flooded? Check the gauges."


def gauge(city: str, note: str = "") -> dict[str, Any]:
    """The river gauge of ``city``: its level in metres (``note`` is ignored)."""
    import time

    time.sleep(0.05)  # a tool that takes a measurable while
    levels = {"Rotterdam": 3.2}
    if city not in levels:
        raise KeyError(f"no gauge in {city}")
    return {"city": city, "level_m": levels[city]}


def _tool_reply(request: Any) -> Any:
    """The root asks one tool-using sub-call; the sub-model asks ``gauge`` twice (one
    argument markup, one city without a gauge), then answers from the results."""
    from recursa.testing import Reply, is_root_turn

    messages = request["messages"]
    if is_root_turn(messages):
        code = f"FINAL(llm_query({TOOL_PROMPT!r}, tools=['gauge']))"
        return f"```repl\n{code}\n```"
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results:
        calls = (
            {"name": "gauge", "arguments": {"city": "Rotterdam", "note": SCRIPT_ARGUMENT}},
            {"name": "gauge", "arguments": {"city": "Atlantis"}},
        )
        return Reply("", tool_calls=calls)
    return Reply("Rotterdam: " + " | ".join(results))


@pytest.fixture
def tool_trace(tmp_path: Path) -> Path:
    """The trace of a real run (the scripted local server, the in-process sandbox) whose
    sub-call ran the host tool ``gauge`` twice: once fine, once failing."""
    from concurrent.futures import ThreadPoolExecutor

    from recursa import RLM
    from recursa.testing import ScriptedServer

    path = tmp_path / "tools.jsonl"

    with ScriptedServer(_tool_reply) as server, ThreadPoolExecutor(1) as pool:
        rlm = RLM(
            "openai/scripted", base_url=server.url, sandbox="inprocess", trace=path,
            sub_call_tools={"gauge": gauge},
        )  # fmt: skip
        # in a thread: a test's browser (Playwright) may hold this thread's event loop
        pool.submit(rlm.completion, "Which cities flooded?", context="gauges").result()
    return path
