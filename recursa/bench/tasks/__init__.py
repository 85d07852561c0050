"""The benchmark tasks, by name.

=====================  =============================================================
``sniah``              RULER single needle in a haystack (essay and noise haystacks)
``oolong``             OOLONG ``trec_coarse``-style aggregation over labelled lines
``oolong-pairs``       the RLM paper's 20 OOLONG-Pairs queries (pair F1)
``browsecomp-lite``    multi-hop questions over generated documents (BrowseComp-Plus-like)
``codeqa-lite``        multiple choice about a repository of stdlib files (CodeQA-like)
=====================  =============================================================

Every task generates :class:`Item` s deterministically from ``(n, length_tokens,
seed)`` and scores predictions in ``[0, 1]``.
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Item, Task
from .browsecomp import BrowseCompLiteTask
from .codeqa import CodeQALiteTask
from .oolong import OolongTask
from .oolong_pairs import OolongPairsTask
from .sniah import SNIAHTask

__all__ = [
    "TASKS",
    "BrowseCompLiteTask",
    "CodeQALiteTask",
    "Item",
    "OolongPairsTask",
    "OolongTask",
    "SNIAHTask",
    "Task",
    "get_task",
]

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        SNIAHTask(essay_fallback=True),
        OolongTask(),
        OolongPairsTask(),
        BrowseCompLiteTask(),
        CodeQALiteTask(),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ConfigError(f"unknown benchmark task {name!r}; known tasks: {known}") from None
