"""Checks every entry point of a completion makes before any work starts, and how the
blocking API runs the async one.

:func:`run_blocking` is ``asyncio.run`` where no event loop runs in this thread (a
script, the CLI). Where one does (a Jupyter notebook, an async web handler calling the
sync API), running a second loop in the same thread is impossible and waiting on the
caller's own loop would deadlock it, so the coroutine runs on a private loop in a worker
thread (:class:`LoopThread`) while the caller's thread waits: the result or the
exception comes back, the caller's context variables go with it, and a
``KeyboardInterrupt`` in the waiting thread (a notebook's "interrupt kernel") cancels
the run, lets it clean up (sandboxes close, the trace gets its ``run_end``), then
propagates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def loop_running() -> bool:
    """Whether this thread is inside a running event loop (a notebook cell is)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result.

    ``asyncio.run`` when this thread runs no loop; otherwise a private loop on a
    worker thread, closed when ``coro`` is done.
    """
    if not loop_running():
        return asyncio.run(coro)
    worker = LoopThread()
    try:
        return worker.run(coro)
    finally:
        worker.close()


class LoopThread:
    """An event loop of its own on a daemon worker thread.

    :meth:`run` hands it a coroutine and blocks until it is done; the loop stays for
    the next one (a :class:`~recursa.session.Session` keeps its sandbox on it) until
    :meth:`close`.
    """

    def __init__(self, name: str = "recursa-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this loop, in a copy of the caller's context; wait for it.

        Its exception is raised here. On ``KeyboardInterrupt`` while waiting, the task
        is cancelled and waited for (its cleanup runs), then the interrupt propagates;
        a second one stops the wait, leaving the cleanup to finish on its own.
        """
        if self._closed:
            coro.close()
            raise RuntimeError("this loop thread is closed")
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[None]] = []

        def start() -> None:
            tasks.append(self._loop.create_task(_bridge(coro, done), context=context))

        def cancel() -> None:
            for task in tasks:
                task.cancel()

        self._loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except KeyboardInterrupt:
            self._loop.call_soon_threadsafe(cancel)
            with contextlib.suppress(BaseException):  # the interrupt is what the caller gets
                done.result()
            raise

    def close(self) -> None:
        """Cancel what is left on the loop, shut it down, and end the thread."""
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            finish = asyncio.run_coroutine_threadsafe(_shutdown(self._loop), self._loop)
            try:
                finish.result()
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
        self._loop.close()


async def _bridge(coro: Coroutine[Any, Any, T], done: concurrent.futures.Future[T]) -> None:
    """Await ``coro`` and hand its outcome to the waiting thread. Everything it raises,
    ``KeyboardInterrupt`` and ``SystemExit`` too, goes there: nothing escapes into the
    worker's loop, which would stop it with the caller still waiting."""
    try:
        result = await coro
    except asyncio.CancelledError:
        done.cancel()
        raise
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(result)


async def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does before it closes its loop."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks(loop) if t is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def check_query(query: str) -> None:
    """A query must say something."""
    if not query or not query.strip():
        raise ConfigError("the query is empty")
