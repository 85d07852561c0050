"""Run in separate processes by the cache tests: write and read one cache file at once."""

from __future__ import annotations

from pathlib import Path

from recursa.models.base import Completion
from recursa.models.cache import ResponseCache, cache_key


def write_and_read(path: str, worker: int, n: int) -> None:
    """``n`` entries of this worker's own plus ``n`` shared ones (every worker writes
    them, with the same content), reading each back at once."""
    with ResponseCache(Path(path)) as cache:
        for i in range(n):
            for name in (f"w{worker}-{i}", f"shared-{i}"):
                key = cache_key("openai/m", [{"role": "user", "content": name}])
                cache.put(key, "openai/m", Completion(f"reply {name}", "openai/m", 10, 5, 0, 0.001))
                hit = cache.get(key)
                assert hit is not None and hit.text == f"reply {name}", (name, hit)
