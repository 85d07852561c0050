"""A short system prompt with a worked example, for small local models.

A 0.5B model does not follow the long paper-style prompt in
:mod:`recursa.prompts`; it copies examples. This prompt is a few hundred
tokens (every token is prefilled on a CPU), states the REPL contract in plain
imperative lines, and shows whole worked turns: find the sentences that hold
the query's rarest word with ``re``, hand just those to ``llm_query``, then
``FINAL`` with the variable holding the answer (a literal answer in an example
gets copied by a lost model). Contexts small enough to read piece by piece get
a second example that chunks them through ``llm_batch``. The examples teach
strategies, never any task's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from .context import ContextInfo
from .prompts import describe_pages, render_system_prompt, tool_lines
from .repl.base import ToolSpec

_PREVIEW_CHARS = 200
_LISTED_PAGES = 100  # every listed page start is prefilled on a CPU
# Below this many characters, reading every chunk with sub-calls is affordable on a CPU.
_CHUNKABLE_CHARS = 200_000
_FINISH = (
    "- When you know the answer, reply with FINAL(answer) in a code block.\n"
    # the one line of recursa.prompts on citations: small models are taught them too
    "- To show your evidence, FINAL(answer, cite=[quote]) attaches exact quotes copied "
    "from `context`.\n"
)


def _describe(info: ContextInfo) -> str:
    if info.kind == "files":
        names = ", ".join(repr(k) for k in info.keys[:10])
        more = ", ..." if len(info.keys) > 10 else ""
        return (
            f"`context` maps {len(info.keys):,} file names to their text, {info.chars:,} "
            f"characters in total: [{names}{more}]; `context[name]` reads one file, "
            "`list(context)` gives the names, `context.pages(name)` a PDF's pages"
        )
    if info.kind == "str":
        pages = describe_pages(info.pages, _LISTED_PAGES)
        return f"`context` is a str of {info.chars:,} characters{pages}"
    if info.kind == "list":
        return (
            f"`context` is a list of {len(info.item_lengths):,} str documents, "
            f"{info.chars:,} characters in total"
        )
    keys = ", ".join(repr(k) for k in info.keys[:10])
    more = ", ..." if len(info.keys) > 10 else ""
    return f"`context` is a dict with keys [{keys}{more}], {info.chars:,} characters in total"


_ALL_TEXT = {
    "str": "context",
    "list": '"\\n\\n".join(context)',
    "dict": '"\\n\\n".join(str(v) for v in context.values())',
    "files": '"\\n\\n".join(context.values())',
}


def _search_example(info: ContextInfo, subcalls: bool) -> str:
    if subcalls:
        use = """\
result = llm_query("\\n".join(found[:20]) + "\\n\\nUsing only the text above, answer briefly: " + q)
print(result)"""
        output = "alvarado 2 sentences found\nIt sailed from the port of Tarsa."
        final = "FINAL(result)"
    else:
        use = """\
for s in found[:20]:
    print(s.strip())"""
        output = "alvarado 1 sentences found\nThe Alvarado left the port of Tarsa at dawn."
        final = 'FINAL("Tarsa")'
    return f"""Example. Query: Which port did the ship Alvarado sail from?
Your reply:
```python
import re
q = "Which port did the ship Alvarado sail from?"
text = {_ALL_TEXT[info.kind]}
sentences = re.split(r"(?<=[.!?])\\s+", text)
words = sorted(set(re.findall(r"[a-z]{{3,}}", q.lower())), key=text.lower().count)
for w in words:  # rarest first
    found = [s for s in sentences if w in s.lower()]
    if 0 < len(found) <= 20:
        break
print(w, len(found), "sentences found")
{use}
```
I send back the output:
{output}
Your next reply:
```python
{final}
```"""


def _chunk_example(info: ContextInfo) -> str:
    return f"""Example. Query: Which complaints come up most often?
Your reply:
```python
q = "Which complaints come up most often?"
text = {_ALL_TEXT[info.kind]}
chunks = [text[i:i + 6000] for i in range(0, len(text), 6000)]
notes = llm_batch(["List the complaints in this text:\\n\\n" + c for c in chunks])
result = llm_query("Notes from each part:\\n" + "\\n".join(notes) + "\\n\\nAnswer: " + q)
print(result)
```
Your next reply, after reading the output:
```python
FINAL(result)
```"""


def compact_system_prompt(
    info: ContextInfo,
    *,
    subcalls: bool,
    max_depth: int,
    template: str | None = None,
    tools: Sequence[ToolSpec] = (),
    sub_call_tools: Sequence[ToolSpec] = (),
) -> str:
    """The system prompt for models with ``prompt_style = "compact"``.

    ``max_depth`` is accepted for symmetry with the full prompt; a small model
    is not shown ``rlm_query`` (it calls ``llm_query`` at depth 1 anyway). A
    custom ``template`` (see :data:`recursa.prompts.PLACEHOLDERS`) replaces the
    built-in text; its placeholders get this prompt's short pieces, and
    ``{tools}`` the ``tools`` given. ``sub_call_tools`` (granted to ``llm_query``
    only) get one line, as in the full prompt.
    """
    functions = (
        "- llm_query(prompt) asks a helper model and returns its answer as a str. "
        "The helper sees only the prompt, so put the text it needs into the prompt "
        "(at most 8,000 characters). llm_batch(prompts) does the same for a list.\n"
        if subcalls
        else ""
    )
    if subcalls and sub_call_tools:
        names = ", ".join(t.name for t in sub_call_tools)
        functions += (
            f"- llm_query(prompt, tools=[...]) lets the helper call these tools itself: {names}.\n"
        )
    preview = info.preview[:_PREVIEW_CHARS].replace("```", "'''")
    if template is not None:
        return render_system_prompt(
            template,
            context_description=f"{_describe(info)}. It begins: {preview!r}",
            repl_functions=functions + _FINISH,
            tools=tool_lines(tools),
            max_depth=max_depth,
        )
    examples = _search_example(info, subcalls)
    if subcalls and info.chars <= _CHUNKABLE_CHARS:
        examples += "\n\n" + _chunk_example(info)
    return f"""You answer a query about a very long text. You cannot read it directly: \
{_describe(info)}, stored in a Python REPL. You write Python code, I run it and send you \
what it prints.

Rules:
- Every reply is one ```python code block. Never print the whole context.
- To find a fact, search for the rarest words of the query and read the sentences that \
contain them, as in the example. If nothing useful is found, search for other words.
{functions}{_FINISH}
The context begins: {preview!r}

{examples}
"""
