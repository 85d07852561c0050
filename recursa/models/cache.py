"""A persistent response cache: a request seen before is answered from SQLite, for free.

:class:`CachedModel` wraps any :class:`~recursa.models.base.Model`. A request's
key is the SHA-256 of the key version, the model spec, where the replies come
from (the model's ``cache_identity``: provider, model and endpoint, so the same
model name on another server is another key), the messages and the sampling
settings (the output cap and every :class:`~recursa.sampling.Sampling` field that is
set: ``temperature``, ``top_p``, ``seed``, ``reasoning_effort``); different in any of
them is a miss. Entries written under an older key version are never served (their
keys cannot match: version 2 keyed on ``max_tokens`` and ``temperature`` only, so its
entries are stale since version 3 added the other sampling fields); ``recursa cache
stats`` counts them as stale and ``recursa cache clear --stale`` removes them.

A hit returns the stored reply as a :class:`~recursa.models.base.Completion` with
``cache_hit=True`` and the token counts recorded when it was first asked: the
ledger counts it as a call (tokens describe the work the answer stands for, and
token budgets see them). Its ``cost_usd`` keeps the meaning it has on a miss,
what was spent: ``0.0`` when the model is priced, ``None`` when it is not (an
unknown price stays unknown). What a hit saved is kept apart: the trace marks the
call ``cached``, and the cache counts each entry's hits, so ``recursa cache
stats`` shows the hits and the USD they saved. Only successful replies are
stored; errors are never cached. A model with a
temperature replays its first sample: that is the point of a cache, so turn it
off when you want fresh samples.

:class:`ResponseCache` is one SQLite file in WAL mode with a busy timeout, so
several threads and processes may read and write it at once. Its schema grows
through named migrations recorded in a ``migrations`` table (as in
simonw/llm). The default file is ``$RECURSA_CACHE_DIR/responses.sqlite``, else
``$XDG_CACHE_HOME/recursa/responses.sqlite``, else
``~/.cache/recursa/responses.sqlite``::

    cache = ResponseCache()                       # or ResponseCache("run-cache.sqlite")
    model = CachedModel(resolve("openai/gpt-5-mini"), cache)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError
from ..sampling import Sampling
from .base import (
    Completion,
    Message,
    Model,
    ModelWrapper,
    offered_tools,
    output_cap,
    text_listener,
)

logger = logging.getLogger(__name__)

CACHE_FILE = "responses.sqlite"
# 3: the key holds every sampling field (temperature, top_p, seed, reasoning_effort) and
# the output cap; 2 held max_tokens and temperature; 1 had no endpoint.
KEY_VERSION = "recursa-response-cache/3"
KEY_VERSION_NUMBER = 3
BUSY_TIMEOUT_S = 30.0

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register a schema step; it runs once per database, in definition order, by name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_responses(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            text TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            cost_usd REAL,
            created_at REAL NOT NULL
        )
        """
    )


@migration
def m002_responses_spec_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX responses_spec ON responses (spec)")


@migration
def m003_responses_endpoint_and_hits(db: sqlite3.Connection) -> None:
    # Rows from before have key version 1: their keys never match again.
    db.execute("ALTER TABLE responses ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE responses ADD COLUMN endpoint TEXT")
    db.execute("ALTER TABLE responses ADD COLUMN hits INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE responses ADD COLUMN last_hit_at REAL")


def default_cache_path() -> Path:
    """``$RECURSA_CACHE_DIR``, ``$XDG_CACHE_HOME/recursa`` or ``~/.cache/recursa``, + the file."""
    if directory := os.environ.get("RECURSA_CACHE_DIR"):
        return Path(directory).expanduser() / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "recursa" / CACHE_FILE


def cache_identity(model: Model) -> dict[str, Any]:
    """Where ``model``'s replies come from: its ``cache_identity`` (a
    :class:`~recursa.models.base.BaseModel` gives provider, model and base URL), a
    wrapper's inner model's, or just the spec for a model that says nothing more."""
    seen = 0
    current: Any = model
    while seen < 16:
        identity = getattr(current, "cache_identity", None)
        if isinstance(identity, dict):
            return identity
        inner = getattr(current, "inner", None)
        if inner is None:
            break
        current, seen = inner, seen + 1
    return {"spec": model.spec}


def cache_key(
    spec: str,
    messages: Sequence[Message],
    *,
    max_tokens: int | None = None,
    sampling: Sampling | None = None,
    identity: dict[str, Any] | None = None,
) -> str:
    """SHA-256 (hex) of everything that shapes a reply: the key version, the model and
    where it is served (``identity``, see :func:`cache_identity`), the messages, the
    output cap the request asks for (the smaller of ``max_tokens`` and the sampling's)
    and every sampling field that is set (temperature, top_p, seed, reasoning_effort).
    A field left unset and one set to the provider's default are different keys."""
    fields = sampling.to_dict() if sampling is not None else {}
    fields.pop("max_tokens", None)  # in the cap
    payload = {
        "v": KEY_VERSION,
        "model": spec,
        "identity": identity,
        "messages": list(messages),
        "max_tokens": output_cap(max_tokens, sampling),
        "sampling": fields,
    }
    data = json.dumps(
        payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """What :meth:`ResponseCache.stats` reports. ``saved_usd`` sums what the hits would
    have cost (``None`` when no hit was priced); ``unpriced_hits`` had no price."""

    path: Path
    entries: int
    stale_entries: int
    hits: int
    saved_usd: float | None
    unpriced_hits: int
    size_bytes: int
    by_model: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "entries": self.entries,
            "stale_entries": self.stale_entries,
            "hits": self.hits,
            "saved_usd": self.saved_usd,
            "unpriced_hits": self.unpriced_hits,
            "size_bytes": self.size_bytes,
            "by_model": self.by_model,
        }


class ResponseCache:
    """Completions by request key in one SQLite file, safe across threads and processes.

    The connection opens on first use and closes with :meth:`close` (or at the end
    of a ``with`` block); models that use the cache during a run hold it open
    (:meth:`acquire`/:meth:`release`) and the last one out closes it, so an RLM
    never leaves a connection behind. A closed cache reopens when used again.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.busy_timeout = busy_timeout
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._users = 0

    def __repr__(self) -> str:
        return f"<ResponseCache {self.path}>"

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def acquire(self) -> None:
        """Hold the cache open (a run that uses it); pair with :meth:`release`."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self._users == 0
        if last:
            self.close()

    def _connection(self) -> sqlite3.Connection:
        """The open connection (call with the lock held)."""
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise ConfigError(f"response cache {self.path}: is a directory, not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): each statement is its own transaction,
            # and migrations open theirs explicitly.
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"response cache {self.path}: cannot open it: {exc}") from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            _set_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
            migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigError(
                f"response cache {self.path}: not a usable SQLite database: {exc}"
            ) from exc
        except BaseException:
            db.close()
            raise
        return db

    # -- reading and writing (blocking; the async forms run them in a thread) --
    def get(self, key: str) -> Completion | None:
        """The stored reply for ``key`` as a cache hit (nothing spent: cost ``0.0``, or
        ``None`` when the model was unpriced), or ``None``; a hit is counted."""
        with self._lock:
            db = self._connection()
            row = db.execute(
                "SELECT text, model, input_tokens, output_tokens, cached_tokens, cost_usd "
                "FROM responses WHERE key = ? AND key_version = ?",
                (key, KEY_VERSION_NUMBER),
            ).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            try:
                db.execute(
                    "UPDATE responses SET hits = hits + 1, last_hit_at = ? WHERE key = ?",
                    (time.time(), key),
                )
            except sqlite3.Error as exc:  # a read-only or busy file still serves hits
                logger.debug("response cache %s: hit not counted: %s", self.path, exc)
        text, model, input_tokens, output_tokens, cached_tokens, cost_usd = row
        return Completion(
            text=text,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            cost_usd=None if cost_usd is None else 0.0,
            cache_hit=True,
        )

    def put(
        self, key: str, spec: str, completion: Completion, *, endpoint: str | None = None
    ) -> None:
        """Store a reply (its original cost too, for the record); a later put replaces it."""
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, spec, text, model, input_tokens, "
                "output_tokens, cached_tokens, cost_usd, created_at, key_version, endpoint) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    spec,
                    completion.text,
                    completion.model,
                    completion.input_tokens,
                    completion.output_tokens,
                    completion.cached_tokens,
                    completion.cost_usd,
                    time.time(),
                    KEY_VERSION_NUMBER,
                    endpoint,
                ),
            )

    async def aget(self, key: str) -> Completion | None:
        return await asyncio.to_thread(self.get, key)

    async def aput(
        self, key: str, spec: str, completion: Completion, *, endpoint: str | None = None
    ) -> None:
        await asyncio.to_thread(self.put, key, spec, completion, endpoint=endpoint)

    def stats(self) -> CacheStats:
        """What the file holds: entries (and stale ones), size on disk, hits, USD saved."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT count(*), coalesce(sum(key_version != ?), 0), coalesce(sum(hits), 0), "
                    "sum(hits * cost_usd), coalesce(sum(hits * (cost_usd IS NULL)), 0) "
                    "FROM responses",
                    (KEY_VERSION_NUMBER,),
                )
                .fetchone()
            )
            models = self._connection().execute(
                "SELECT spec, count(*) FROM responses GROUP BY spec ORDER BY spec"
            )
            by_model = {str(spec): int(n) for spec, n in models}
        entries, stale, hits, saved, unpriced_hits = row
        return CacheStats(
            path=self.path,
            entries=int(entries),
            stale_entries=int(stale),
            hits=int(hits),
            saved_usd=float(saved) if saved is not None else (None if hits else 0.0),
            unpriced_hits=int(unpriced_hits),
            size_bytes=self.size_on_disk(),
            by_model=by_model,
        )

    def size_on_disk(self) -> int:
        """Bytes of the database file and its WAL and shared-memory files."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total

    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM responses").fetchone()
        return int(row[0])

    def clear(self, spec: str | None = None) -> int:
        """Delete every stored reply (or one model's); returns how many were removed."""
        with self._lock:
            db = self._connection()
            if spec is None:
                cursor = db.execute("DELETE FROM responses")
            else:
                cursor = db.execute("DELETE FROM responses WHERE spec = ?", (spec,))
        return cursor.rowcount

    def clear_stale(self) -> int:
        """Delete the entries written under an older key version (never served again)."""
        with self._lock:
            cursor = self._connection().execute(
                "DELETE FROM responses WHERE key_version != ?", (KEY_VERSION_NUMBER,)
            )
        return cursor.rowcount

    def compact(self) -> None:
        """Give the space of deleted entries back to the disk (``VACUUM``)."""
        with self._lock:
            db = self._connection()
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")

    def applied_migrations(self) -> list[str]:
        with self._lock:
            rows = self._connection().execute("SELECT name FROM migrations ORDER BY rowid")
            return [str(r[0]) for r in rows]


def _set_wal(db: sqlite3.Connection) -> None:
    # Switching a new file to WAL needs a moment of exclusive access; a process that
    # races another one for it may see "locked" despite the busy timeout: try again.
    for attempt in range(50):
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the pending :data:`MIGRATIONS` in one write transaction; returns their names.

    ``BEGIN IMMEDIATE`` takes the write lock first, so two processes opening a new
    file at once apply each migration exactly once.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    if {r[0] for r in db.execute("SELECT name FROM migrations")} >= {n for n, _ in MIGRATIONS}:
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        done = {r[0] for r in db.execute("SELECT name FROM migrations")}
        applied: list[str] = []
        for name, step in MIGRATIONS:
            if name not in done:
                step(db)
                db.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time())
                )
                applied.append(name)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return applied


class CachedModel(ModelWrapper):
    """A :class:`Model` whose replies are looked up in, and stored to, a :class:`ResponseCache`.

    ``spec`` and ``context_window`` are the inner model's, so accounting stays per
    real model. A failing cache (disk full, a locked file past the busy timeout) is
    logged and bypassed: a reply already paid for is never lost to it.
    """

    def __init__(self, inner: Model, cache: ResponseCache) -> None:
        super().__init__(inner)
        self.cache = cache
        self.identity = cache_identity(inner)
        base_url = self.identity.get("base_url")
        self._endpoint = base_url if isinstance(base_url, str) else None

    def __repr__(self) -> str:
        return f"<CachedModel {self.inner!r} in {self.cache.path}>"

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Completion:
        if offered_tools():  # a tool's result may change between runs: never cached
            return await self.inner.complete(messages, max_tokens=max_tokens, sampling=sampling)
        key = cache_key(
            self.spec,
            messages,
            max_tokens=max_tokens,
            sampling=sampling,
            identity=self.identity,
        )
        try:
            hit = await self.cache.aget(key)
        except sqlite3.Error as exc:
            logger.warning("response cache %s: lookup failed: %s", self.cache.path, exc)
            hit = None
        if hit is not None:
            listener = text_listener()
            if listener is not None and hit.text:  # a stored reply streams in one piece
                listener(hit.text)
            return hit
        completion = await self.inner.complete(messages, max_tokens=max_tokens, sampling=sampling)
        try:
            await self.cache.aput(key, self.spec, completion, endpoint=self._endpoint)
        except sqlite3.Error as exc:
            logger.warning("response cache %s: store failed: %s", self.cache.path, exc)
        return completion

    # A run holds its models open (see RLM): hold the cache and the inner model too.
    async def __aenter__(self) -> CachedModel:
        self.cache.acquire()
        try:
            if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
                await self.inner.__aenter__()
        except BaseException:
            self.cache.release()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
                await self.inner.__aexit__(exc_type, exc, tb)
        finally:
            self.cache.release()

    async def aclose(self) -> None:
        close: Any = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


CacheOption = bool | str | Path | ResponseCache | None


def open_cache(option: CacheOption) -> ResponseCache | None:
    """``cache=`` of the API and ``--cache [PATH]``: ``True`` for the default file, a path,
    a ready :class:`ResponseCache`, or ``None``/``False`` for none."""
    if option is None or option is False:
        return None
    if option is True:
        return ResponseCache()
    if isinstance(option, ResponseCache):
        return option
    if isinstance(option, str) and not option.strip():
        raise ConfigError("the response cache path is empty")
    return ResponseCache(option)


def with_cache(model: Model, cache: ResponseCache | None) -> Model:
    """``model`` wrapped in ``cache`` (once), or as it is when there is no cache or the
    model says ``cacheable = False`` (a replay: its answers are recorded already)."""
    if cache is None or isinstance(model, CachedModel) or not getattr(model, "cacheable", True):
        return model
    return CachedModel(model, cache)
