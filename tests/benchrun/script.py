"""A scripted OpenAI-compatible "model" that plays each benchmark method plausibly.

The reply function tells the methods apart by their prompts and answers the way
a capable model would: the RLM root writes code that searches ``context``
(S-NIAH) or labels every line with ``llm_batch`` and counts (OOLONG), its
sub-calls read their prompt, the baselines read what they were shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from recursa.bench.tasks._trec import FILLERS, TEMPLATES

KEY_RE = re.compile(r"special magic (?:number|uuid) for (\S+) mentioned")
BROWSECOMP_MARK = "The documents describe a fictional world"
LABEL_PROMPT = "Label this question with its TREC coarse class: "


@cache
def _template_regexes() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for label, templates in TEMPLATES.items():
        for template in templates:
            parts = re.split(r"\{(\w+)\}", template)
            regex = "".join(
                re.escape(part)
                if i % 2 == 0
                else "(?:" + "|".join(map(re.escape, FILLERS[part])) + ")"
                for i, part in enumerate(parts)
            )
            out.append((label, re.compile(regex + r"\Z")))
    return out


def label_of(question: str) -> str:
    return next((label for label, rx in _template_regexes() if rx.match(question)), "entity")


def needle_value(key: str, text: str) -> str | None:
    found = re.search(r"special magic \w+ for " + re.escape(key) + r" is: ([\w-]+)", text)
    return found.group(1) if found else None


def rlm_root(messages: Sequence[dict[str, Any]]) -> str:
    query = str(messages[1]["content"])
    turn = sum(1 for m in messages if m["role"] == "assistant")
    key = KEY_RE.search(query)
    if key is not None:
        if turn == 0:
            return (
                "Let me find the needle.\n```repl\nimport re\n"
                f"key = {key.group(1)!r}\n"
                "m = re.search(r'special magic \\w+ for ' + re.escape(key) + r' is: ', context)\n"
                "snippet = context[max(0, m.start() - 200): m.end() + 200]\n"
                "value = llm_query('Which value is given for ' + key + '? Reply with it only.\\n' + snippet)\n"
                "print(value)\n```"
            )
        return "```repl\nFINAL_VAR(value, cite=(m.start(), m.end()))\n```"
    if BROWSECOMP_MARK in query:
        return browsecomp_root(query)
    if turn == 0:
        return (
            "```repl\nfrom collections import Counter\n"
            "questions = [l.split(' || Instance: ', 1)[1] for l in context.splitlines() if ' || Instance: ' in l]\n"
            f"labels = llm_batch([{LABEL_PROMPT!r} + q for q in questions])\n"
            "counts = Counter(labels).most_common()\nprint(counts)\n```"
        )
    pick = "-1" if "least common" in query else "0"
    return f"```repl\nFINAL('Label: ' + counts[{pick}][0])\n```"


def browsecomp_root(query: str) -> str:
    """Finds the document about the entity the question names and cites it; it does not
    follow the hops, so it answers only the first one (and scores 0)."""
    return (
        "```repl\n"
        f"q = {query!r}\n"
        "titles = [d.split(chr(10), 1)[0].removeprefix('Title: ') for d in context]\n"
        "named = max((t for t in titles if t in q), key=len)\n"
        "i = titles.index(named)\n"
        "FINAL('It is about ' + named, cite=(i, 0, min(200, len(context[i]))))\n"
        "```"
    )


def rlm_sub(prompt: str) -> str:
    if prompt.startswith(LABEL_PROMPT):
        return label_of(prompt[len(LABEL_PROMPT) :])
    key = re.search(r"Which value is given for (\S+)\?", prompt)
    value = needle_value(key.group(1), prompt) if key else None
    return value or "not found"


def _question(text: str) -> str:
    found = re.findall(r"Question: (.*)", text)
    return found[-1] if found else ""


def answer_from(text: str, query: str) -> str:
    key = KEY_RE.search(query)
    if key is None:
        return "Label: entity"
    value = needle_value(key.group(1), text)
    return f"The special magic value is {value}." if value else "I could not find it."


def codeact(messages: Sequence[dict[str, Any]]) -> str:
    query = _question(str(messages[1]["content"]))
    results = [str(m["content"]) for m in messages if str(m["content"]).startswith("SEARCH(")]
    if not results:
        key = KEY_RE.search(query)
        words = f"special magic {key.group(1)}" if key else "questions"
        return f"I should search first.\nSEARCH({words})"
    return "ANSWER: " + answer_from(results[-1], query)


def summary_notes(prompt: str) -> str:
    needles = re.findall(r"One of the special magic \w+ for \S+ is: [\w-]+\.", prompt)
    return " ".join(dict.fromkeys(needles)) or "Nothing relevant yet."


def reply(body: dict[str, Any]) -> str:
    """The ScriptedServer reply function."""
    messages = body["messages"]
    first, last = str(messages[0]["content"]), str(messages[-1]["content"])
    if messages[0]["role"] == "system" and "Python REPL" in first:
        return rlm_root(messages)
    if messages[0]["role"] == "system" and "BM25" in first:
        return codeact(messages)
    if "one chunk at a time" in last:
        return summary_notes(last)
    if last.startswith("These are your notes"):
        return answer_from(last, _question(last))
    if "Answer the question about the text above." in last:
        return answer_from(last, _question(last))
    return rlm_sub(last)
