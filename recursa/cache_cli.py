"""``recursa cache``: look at and empty the response cache (``--cache`` of ``recursa run``).

``stats`` prints what the file holds (entries, stale ones from an older key version,
size on disk, hits and the USD they saved), ``clear`` deletes entries without asking
and says what it removed, ``path`` prints the default location
(``$RECURSA_CACHE_DIR``, ``$XDG_CACHE_HOME/recursa`` or ``~/.cache/recursa``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .models.cache import CacheStats, ResponseCache, default_cache_path

_CACHE_OPTION = click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="The cache file (default: see `recursa cache path`).",
)


@click.group("cache")
def cache() -> None:
    """Inspect or clear the response cache.

    \b
    Examples:
      recursa cache stats --json
      recursa cache clear --model openai/gpt-5-mini
      recursa cache clear --stale
    """


@cache.command("path")
def path_command() -> None:
    """Print where the default cache file lives."""
    click.echo(str(default_cache_path()))


@cache.command("stats")
@_CACHE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats_command(cache_path: Path | None, as_json: bool) -> None:
    """Entries, size on disk, hits and what they saved."""
    target = cache_path if cache_path is not None else default_cache_path()
    stats = _stats(target)
    if as_json:
        click.echo(json.dumps(stats.to_dict(), ensure_ascii=False))
        return
    click.echo(f"cache:    {stats.path}" + ("" if target.exists() else " (no file yet)"))
    stale = f" ({stats.stale_entries} stale, never served)" if stats.stale_entries else ""
    click.echo(f"entries:  {stats.entries}{stale}")
    click.echo(f"size:     {_size(stats.size_bytes)}")
    saved = "n/a" if stats.saved_usd is None else f"${stats.saved_usd:.4f}"
    unpriced = f", {stats.unpriced_hits} unpriced" if stats.unpriced_hits else ""
    click.echo(f"hits:     {stats.hits} (saved {saved}{unpriced})")
    for spec, count in stats.by_model.items():
        click.echo(f"  {spec}: {count}")


@cache.command("clear")
@_CACHE_OPTION
@click.option("--model", "spec", default=None, metavar="SPEC", help="Only this model's entries.")
@click.option("--stale", is_flag=True, help="Only entries of an older key version.")
def clear_command(cache_path: Path | None, spec: str | None, stale: bool) -> None:
    """Delete cached replies (no confirmation) and print what was removed."""
    target = cache_path if cache_path is not None else default_cache_path()
    if not target.exists():
        click.echo(f"removed 0 entries: no cache at {target}")
        return
    with ResponseCache(target) as store:
        before = store.size_on_disk()
        removed = store.clear_stale() if stale else store.clear(spec)
        store.compact()
        after = store.size_on_disk()
        left = len(store)
    what = f" of {spec}" if spec else " (stale)" if stale else ""
    click.echo(
        f"removed {removed} entries{what} from {target} "
        f"({_size(before)} -> {_size(after)}; {left} left)"
    )


def _stats(target: Path) -> CacheStats:
    if not target.exists():  # never create a file just to say it is empty
        return CacheStats(target, 0, 0, 0, 0.0, 0, 0)
    with ResponseCache(target) as store:
        return store.stats()


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
