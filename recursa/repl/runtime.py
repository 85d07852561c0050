"""The REPL that model-written code runs in: names, cells, output capture, finishing.

This module is shared by every sandbox: the in-process one imports it, the
worker process runs it. It therefore uses the standard library only and
imports nothing from recursa, so a worker can load it from a copy of this file
in its private directory.

The host is reached through one function, ``call_host(name, payload)``, that
returns a JSON value or raises :class:`HostCallError`. How the call travels
(a thread hop, a pipe) is the sandbox's business.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import linecache
import mmap
import os
import re
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

CallHost = Callable[[str, dict[str, Any]], Any]

#: Names the REPL always defines; sub-call names are added by depth.
CORE_NAMES = ("context", "FINAL", "FINAL_VAR", "answer", "SHOW_VARS", "BUDGET", "cite")
SUBCALL_NAMES = (
    "llm_query",
    "llm_batch",
    "llm_query_batched",
    "rlm_query",
    "rlm_batch",
    "rlm_query_batched",
)
#: The names the model may use but not keep: rebound or deleted by a cell, each is put
#: back after it (``answer`` is the model's to set, and is checked on its own).
SCAFFOLD_NAMES = tuple(n for n in CORE_NAMES if n != "answer") + SUBCALL_NAMES


class _Final(BaseException):
    """FINAL()/FINAL_VAR() was called. A BaseException so `except Exception` cannot eat it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


#: Most citations one call may send, and the longest quote (the host checks both again).
MAX_CITATIONS = 64
MAX_QUOTE_CHARS = 4_000


class HostCallError(RuntimeError):
    """A call to the host (a sub-call or a tool) failed; the message says why."""


def _tool_names(tools: Any) -> list[str]:
    """``tools=`` of ``llm_query``/``llm_batch``: tool names (a str, or a list of them)."""
    names = [tools] if isinstance(tools, str) else list(tools)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"tools= takes tool names (str), not {type(name).__name__}")
    return names


class SubcallError(str):
    """What a failed item of ``llm_batch``/``rlm_batch`` returns.

    It is a ``str`` (``"[error: ...]"``) so code that joins answers keeps working,
    and ``isinstance(x, SubcallError)`` tells failures apart; ``.error`` holds
    the message.
    """

    error: str

    def __new__(cls, error: str) -> SubcallError:
        self = super().__new__(cls, f"[error: {error}]")
        self.error = error
        return self


class Image:
    """An image in the context, to pass on with ``llm_query(prompt, images=[img])``."""

    JSON_TAG = "__recursa_image__"

    def __init__(self, data: bytes, mime: str = "image/png") -> None:
        self.data = data
        self.mime = mime

    def __repr__(self) -> str:
        return f"<Image {self.mime}, {len(self.data):,} bytes>"

    def to_json(self) -> dict[str, str]:
        return {self.JSON_TAG: self.mime, "base64": base64.b64encode(self.data).decode()}

    @classmethod
    def from_json(cls, value: dict[str, str]) -> Image:
        return cls(base64.b64decode(value["base64"], validate=True), str(value[cls.JSON_TAG]))


#: The image types a sub-call may carry, by the bytes they start with.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_mime(data: bytes) -> str | None:
    """The MIME type of image bytes, from their magic; None for anything else."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def materialize(value: Any) -> Any:
    """Turn the JSON form of a context back into Python values (images into :class:`Image`).

    A tagged dict that is not a well-formed image stays a dict (a context is data)."""
    if isinstance(value, dict):
        if Image.JSON_TAG in value:
            try:
                return Image.from_json(value)
            except (TypeError, ValueError, KeyError):
                pass
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    return value


#: A pack file ends with its index's byte offset (little-endian u64) and this magic.
PACK_MAGIC = b"RCSPACK1"
PACK_TRAILER = struct.Struct("<Q8s")
_NAMES_IN_REPR = 5
_MAP_FROM = 1 << 20  # a linked file this large is mapped, not read


def pack_index(data: Any) -> list[dict[str, Any]]:
    """A pack's index entries, from its bytes (an ``mmap`` or ``bytes``); ValueError if
    they are not a pack."""
    size = len(data)
    if size < PACK_TRAILER.size:
        raise ValueError("not a recursa pack (too short)")
    offset, magic = PACK_TRAILER.unpack_from(data, size - PACK_TRAILER.size)
    if magic != PACK_MAGIC or offset > size - PACK_TRAILER.size:
        raise ValueError("not a recursa pack (bad trailer)")
    entries: list[dict[str, Any]] = json.loads(bytes(data[offset : size - PACK_TRAILER.size]))
    return entries


class Files(Mapping[str, str]):
    """Many documents as one read-only mapping of name to text, over a pack file's bytes.

    Only the index is parsed up front: ``files[name]`` decodes that one document's bytes,
    so code that reads ten files of ten thousand reads ten. ``dict(files)`` reads them all.
    A linked document (plain UTF-8 left where it lies, see :mod:`recursa.pack`) is read
    from the descriptor ``open_source(number)`` gives, and closed again.
    """

    def __init__(self, data: Any, open_source: Callable[[int], int] | None = None) -> None:
        """``data``: the pack's bytes (an ``mmap`` or ``bytes``): text, index, trailer;
        ``open_source``: a read-only descriptor of a linked document (its number)."""
        entries = pack_index(data)
        self._data = data
        self._open_source = open_source
        self._entries: dict[str, dict[str, Any]] = {e["name"]: e for e in entries}

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError("context maps file names to texts: context[name], see list(context)")
        entry = self._entries.get(name)
        if entry is None:
            raise KeyError(f"{name!r}: no such file ({len(self):,} files: see list(context))")
        nbytes = entry["bytes"]
        if "source" in entry:
            return _read_linked(self._open_source, entry["source"], nbytes, name)
        start = entry["offset"]
        return str(self._data[start : start + nbytes], "utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def size(self, name: str) -> int:
        """The length of ``files[name]`` in characters, without reading it."""
        return int(self._entries[name]["chars"])

    def pages(self, name: str) -> list[str] | None:
        """The document's text cut at its page starts (a PDF's), or None without pages."""
        starts = self._entries[name].get("pages")
        if not starts:
            return None
        text = self[name]
        ends = [*starts[1:], len(text)]
        return [text[a:b] for a, b in zip(starts, ends, strict=True)]

    def __repr__(self) -> str:
        names = list(self._entries)
        shown = ", ".join(repr(n) for n in names[:_NAMES_IN_REPR])
        hidden = len(names) - _NAMES_IN_REPR
        more = f", ... ({hidden:,} more)" if hidden > 0 else ""
        chars = sum(int(e["chars"]) for e in self._entries.values())
        return f"<Files: {len(names):,} files, {chars:,} characters: {shown}{more}>"


def _read_linked(
    open_source: Callable[[int], int] | None, number: int, nbytes: int, name: str
) -> str:
    """A linked document's text, from a descriptor of it opened for this read: read
    whole when small (one system call), mapped when large (no second copy)."""
    if open_source is None:
        raise OSError(f"{name}: this pack links to files it has no way to open")
    fd = open_source(number)
    try:
        if nbytes < _MAP_FROM:
            data = os.read(fd, nbytes + 1)
            while len(data) < nbytes and (more := os.read(fd, nbytes + 1 - len(data))):
                data += more
            if len(data) == nbytes:
                return str(data, "utf-8")
        elif os.fstat(fd).st_size == nbytes:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
                return str(mm, "utf-8")
        raise OSError(f"{name} changed after the run read it: start the run again")
    finally:
        os.close(fd)


def _budget(
    *,
    usd: float | None = None,
    tokens: int | None = None,
    seconds: float | None = None,
    calls: int | None = None,
) -> dict[str, Any]:
    """A budget for one branch: ``rlm_query(prompt, budget=Budget(calls=20))``. Keyword-only,
    in the same field order as the host's :class:`recursa.budget.Budget`."""
    return {"usd": usd, "tokens": tokens, "seconds": seconds, "calls": calls}


class _CappedBuffer(io.TextIOBase):
    """Keeps the first ``limit`` characters written and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        n = len(s)
        self.total += n
        if self.kept < self.limit:
            piece = s[: self.limit - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        return n

    def getvalue(self) -> str:
        text = "".join(self.parts)
        if self.total > self.kept:
            text += (
                f"\n[output truncated: showing the first {self.kept:,} of "
                f"{self.total:,} characters]"
            )
        return text


class _ThreadStream(io.TextIOBase):
    """sys.stdout/sys.stderr replacement that writes to the current thread's cell buffer.

    Installed once per process, so REPLs running in parallel threads never swap
    the process-wide streams under each other.
    """

    _local = threading.local()

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        buffer: _CappedBuffer | None = getattr(self._local, "buffer", None)
        if buffer is None:
            return int(self.fallback.write(s))
        return buffer.write(s)

    def flush(self) -> None:
        if getattr(self._local, "buffer", None) is None:
            self.fallback.flush()

    def __getattr__(self, name: str) -> Any:
        """What the replaced stream has beyond a text stream's API (ipykernel's
        ``set_parent``, which routes a notebook cell's output), from the replaced stream."""
        if name == "fallback":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.fallback, name)


_install_lock = threading.Lock()


def _install_streams() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStream):
            sys.stdout = _ThreadStream(sys.stdout)
        if not isinstance(sys.stderr, _ThreadStream):
            sys.stderr = _ThreadStream(sys.stderr)


_MISSING: Any = object()


def _short(value: Any) -> str:
    """A short, safe description of a value the model set (no user ``repr`` runs)."""
    if value is None or type(value) in (bool, int, float):
        text = repr(value)
        if len(text) <= 40:
            return text
    if type(value) is str and len(value) <= 40:
        return repr(value)
    return f"a {type(value).__name__}"


def _describe(value: Any) -> str:
    if isinstance(value, str | list | dict | tuple | set | bytes | Files):
        return f"{type(value).__name__}, len {len(value):,}"
    return type(value).__name__


class Repl:
    """One persistent namespace and the functions the model may call in it."""

    def __init__(
        self,
        context: Any,
        call_host: CallHost,
        *,
        subcalls: bool = True,
        tools: Sequence[dict[str, str]] = (),
        max_output_chars: int = 20_000,
    ) -> None:
        self.call_host = call_host
        self.max_output_chars = max_output_chars
        self.cells = 0
        ns: dict[str, Any] = {"__name__": "__repl__", "__builtins__": __builtins__}
        ns["context"] = context
        ns["re"], ns["json"] = re, json  # small models often forget to import them
        ns["answer"] = {"content": "", "ready": False}
        ns["FINAL"] = self._final
        ns["FINAL_VAR"] = self._final_var
        ns["SHOW_VARS"] = self._show_vars
        ns["BUDGET"] = self._budget
        ns["cite"] = self._cite
        ns["SubcallError"] = SubcallError
        ns["Image"] = Image
        ns["Budget"] = _budget
        if subcalls:
            ns["llm_query"] = self._llm_query
            ns["llm_batch"] = ns["llm_query_batched"] = self._llm_batch
            ns["rlm_query"] = self._rlm_query
            ns["rlm_batch"] = ns["rlm_query_batched"] = self._rlm_batch
        for tool in tools:
            ns[tool["name"]] = self._tool_stub(tool)
        self.namespace = ns
        self._reserved = set(ns)
        #: the scaffold as it was built: what a cell that rebinds or deletes a name gets back
        self._scaffold = {
            name: ns[name] for name in (*SCAFFOLD_NAMES, *(t["name"] for t in tools)) if name in ns
        }
        self._answer_content: Any = ""
        self._ready_noted: str | None = None
        _install_streams()

    # -- functions visible to the model --------------------------------------
    def _final(self, value: Any = "", cite: Any = None) -> None:
        if cite is not None:
            self._send_citations(_citation_list(cite))
        raise _Final(_as_answer(value))

    def _final_var(self, name_or_value: Any, cite: Any = None) -> None:
        if isinstance(name_or_value, str):
            key = name_or_value.strip().strip("'\"")
            if key.isidentifier():
                if key not in self.namespace:
                    raise NameError(
                        f"FINAL_VAR: no variable named {key!r}; create it first, "
                        "or use FINAL(text) to answer with literal text"
                    )
                if cite is not None:
                    self._send_citations(_citation_list(cite))
                raise _Final(_as_answer(self.namespace[key]))
        if cite is not None:
            self._send_citations(_citation_list(cite))
        raise _Final(_as_answer(name_or_value))

    def _cite(self, span: Any) -> Any:
        """Record evidence for the answer: a quote (str) from ``context``, ``(start, end)``
        offsets into it, ``(item, start, end)`` / ``(item, quote)`` in an item of a list
        or dict context, or a dict of those fields. Returns the cited text (the quote, or
        the context's text at the span); the host checks it and a note says when it could
        not find it."""
        ref = _citation_ref(span)
        self._send_citations([ref])
        if "quote" in ref:
            return ref["quote"]
        try:
            text = self.namespace["context"]
            if "item" in ref:
                text = text[ref["item"]]
            return _plain(text[ref["start"] : ref["end"]]) if isinstance(text, str) else span
        except Exception:
            return span

    def _send_citations(self, refs: list[dict[str, Any]]) -> None:
        if len(refs) > MAX_CITATIONS:
            raise ValueError(f"at most {MAX_CITATIONS} citations at once, not {len(refs)}")
        checked = self.call_host("cite", {"citations": refs})
        if isinstance(checked, list):
            for one in checked:
                if isinstance(one, dict) and one.get("verified") is not True:
                    print(f"[cite: unverified: {str(one.get('reason'))[:300]}]")

    def _show_vars(self) -> dict[str, str]:
        """The user's variables and their types/sizes."""
        return {
            k: _describe(v)
            for k, v in self.namespace.items()
            if (not k.startswith("_") and k not in self._reserved) or k in ("context", "answer")
        }

    def _budget(self) -> Any:
        """What is left of the run's budget: usd, tokens, calls, seconds (None = unlimited)."""
        return self.call_host("budget", {})

    def _llm_query(
        self,
        prompt: Any,
        model: str | None = None,
        images: Sequence[Any] | None = None,
        tools: Sequence[str] | None = None,
    ) -> str:
        payload: dict[str, Any] = {"prompt": _text(prompt), "model": model}
        if images:
            payload["images"] = [_image_json(i) for i in images]
        if tools:
            payload["tools"] = _tool_names(tools)
        return str(self.call_host("llm_query", payload))

    def _llm_batch(
        self,
        prompts: Sequence[Any],
        model: str | None = None,
        stop_when: Callable[[list[str]], bool] | None = None,
        tools: Sequence[str] | None = None,
    ) -> list[Any]:
        texts = [_text(p) for p in prompts]
        names = _tool_names(tools) if tools else []
        if stop_when is None:
            payload: dict[str, Any] = {"prompts": texts, "model": model}
            if names:
                payload["tools"] = names
            return _batch_results(self.call_host("llm_batch", payload))
        return self._batch_until(texts, model, stop_when, names)

    def _batch_until(
        self,
        prompts: list[str],
        model: str | None,
        stop_when: Callable[[list[str]], bool],
        tools: list[str] | None = None,
    ) -> list[Any]:
        """Sub-calls in flight together; once ``stop_when(answers so far)`` holds, the host
        cancels the rest (their partial cost is still charged)."""
        group = uuid.uuid4().hex
        results: list[Any] = [None] * len(prompts)
        arrived: list[str] = []
        pool = ThreadPoolExecutor(max_workers=min(64, max(1, len(prompts))))
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        futures: dict[Future[Any], int] = {
            pool.submit(
                self.call_host, "llm_query", {"prompt": p, "model": model, "group": group, **extra}
            ): i
            for i, p in enumerate(prompts)
        }
        pending = set(futures)
        stopped = False
        try:
            while pending and not stopped:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures[future]
                    try:
                        results[index] = str(future.result())
                        arrived.append(results[index])
                    except HostCallError as exc:
                        results[index] = SubcallError(str(exc))
                if stop_when(list(arrived)):
                    stopped = True
                    self.call_host("cancel", {"group": group})
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
        for future, index in futures.items():
            if results[index] is None:
                try:
                    results[index] = str(future.result())
                except BaseException:
                    results[index] = SubcallError("cancelled: stop_when was met")
        return results

    def _rlm_query(
        self,
        prompt: Any,
        context: Any = None,
        model: Any = None,
        budget: dict[str, Any] | None = None,
    ) -> str:
        if budget is None and isinstance(model, dict):  # rlm_query(p, ctx, Budget(...))
            model, budget = None, model
        payload = {
            "prompt": _text(prompt),
            "context": _jsonable(context),
            "model": model,
            "budget": budget,
        }
        return str(self.call_host("rlm_query", payload))

    def _rlm_batch(
        self,
        prompts: Sequence[Any],
        contexts: Sequence[Any] | None = None,
        model: str | None = None,
    ) -> Any:
        payload = {
            "prompts": [_text(p) for p in prompts],
            "contexts": _jsonable(contexts),
            "model": model,
        }
        return _batch_results(self.call_host("rlm_batch", payload))

    def _tool_stub(self, tool: dict[str, str]) -> Callable[..., Any]:
        name = tool["name"]

        def stub(*args: Any, **kwargs: Any) -> Any:
            return self.call_host("tool", {"name": name, "args": list(args), "kwargs": kwargs})

        stub.__name__ = name
        stub.__doc__ = tool.get("doc") or None
        return stub

    # -- running cells ---------------------------------------------------------
    def run(self, code: str) -> dict[str, Any]:
        """Run one cell. Returns ``{"output", "error", "final", "duration_s"}``.

        Printed output is capped at ``max_output_chars`` with a note; a traceback
        is returned as ``error``; the value of a trailing expression is printed,
        as in a notebook.
        """
        self.cells += 1
        filename = f"<cell {self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        buffer = _CappedBuffer(self.max_output_chars)
        local = _ThreadStream._local
        local.buffer = buffer
        error: str | None = None
        final: str | None = None
        start = time.perf_counter()
        try:
            self._execute(code, filename)
        except _Final as done:
            final = done.value
        except SyntaxError as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc))
        except BaseException as exc:  # the model must see every failure, interrupts included
            error = _format_traceback(exc, filename)
        finally:
            local.buffer = None
        output = buffer.getvalue()
        try:
            restored = self._restore_scaffold()
        except BaseException as exc:  # a hostile key's __eq__, an interrupt: try next cell
            restored = f"note: reserved names could not be checked ({type(exc).__name__})"
        try:
            ready, note = self._settle_answer()
        except BaseException as exc:  # a hostile __str__, an interrupt: never lose the REPL
            self.namespace["answer"] = {"content": "", "ready": False}
            self._answer_content = ""
            ready, note = None, f"`answer` could not be read ({type(exc).__name__}); it is reset"
        if final is None:
            final = ready
        for line in (restored, note):
            if line:
                output += ("\n" if output and not output.endswith("\n") else "") + f"[{line}]"
        try:
            final = None if final is None else _as_answer(final)
        except BaseException:
            final, error = None, (error or "") + "\nthe final answer could not be read as text"
        return {
            "output": _plain(output),
            "error": None if error is None else _cap_middle(_plain(error), self.max_output_chars),
            "final": final,
            "duration_s": time.perf_counter() - start,
        }

    def _restore_scaffold(self) -> str | None:
        """Put back every scaffold name a cell rebound or deleted; a note naming them.

        Only the binding is checked (by identity, so no model code runs): a ``context``
        changed in place stays as the cell left it.
        """
        ns = self.namespace
        changed = [
            name for name, value in self._scaffold.items() if ns.get(name, _MISSING) is not value
        ]
        if not changed:
            return None
        ns.update({name: self._scaffold[name] for name in changed})
        names = ", ".join(f"`{name}`" for name in changed)
        if len(changed) == 1:
            return (
                f"note: {names} is a reserved name and was restored; "
                "store your data under another name"
            )
        return (
            f"note: {names} are reserved names and were restored; store your data under other names"
        )

    def _settle_answer(self) -> tuple[str | None, str | None]:
        """Read ``answer`` after a cell: the final answer if ``answer["ready"] is True``,
        and a note for the model when the cell broke its shape.

        ``answer`` always stays a dict, so the REPL (and the host, which reads
        ``answer["content"]`` when a run stops early) survives any rebinding: a str or a
        number assigned to ``answer`` becomes ``answer["content"]``; anything else, or a
        ``del answer``, restores the dict with the content it held before.
        """
        ns = self.namespace
        value = ns.get("answer", _MISSING)
        if isinstance(value, dict):
            content = dict.get(value, "content", "")
            ready = dict.get(value, "ready", False)
            if type(value) is not dict:
                ns["answer"] = {"content": content, "ready": ready}
            self._answer_content = content
            if ready is True:
                return _as_answer(content), None
            if ready is False or ready is None:
                self._ready_noted = None
                return None, None
            shown = _short(ready)
            if shown == self._ready_noted:  # told once, not after every later cell
                return None, None
            self._ready_noted = shown
            return None, (
                f'answer["ready"] is {shown}, not True: the run goes on; '
                'set answer["ready"] = True to finish'
            )
        shape = '`answer` must stay a dict: {"content": ..., "ready": False}'
        if isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            self._answer_content = _as_answer(value)
            ns["answer"] = {"content": self._answer_content, "ready": False}
            return None, (
                f'{shape}. Your {type(value).__name__} is now answer["content"]; set '
                'answer["ready"] = True (or call FINAL(...)) to finish with it'
            )
        ns["answer"] = {"content": self._answer_content, "ready": False}
        what = "was deleted" if value is _MISSING else f"was set to {_short(value)}"
        return None, f"{shape}. It {what}, so it is restored with its previous content"

    def _execute(self, code: str, filename: str) -> None:
        tree = ast.parse(code, filename, "exec")
        last: ast.Expr | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()  # type: ignore[assignment]
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is not None:
            expr = ast.Expression(last.value)
            value = eval(compile(expr, filename, "eval"), self.namespace)
            if value is not None:
                print(repr(value) if not isinstance(value, str) else value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_span(value: Any) -> bool:
    """``(start, end)`` or ``(item, start, end)``: a sequence ending in two ints."""
    return (
        isinstance(value, tuple | list)
        and len(value) in (2, 3)
        and _is_int(value[-1])
        and _is_int(value[-2])
    )


def _citation_list(cite: Any) -> list[dict[str, Any]]:
    """``FINAL(..., cite=...)``'s citations: one quote, span or dict, or a list of them."""
    if (
        isinstance(cite, str | dict)
        or _is_span(cite)
        or (isinstance(cite, tuple) and len(cite) == 2 and isinstance(cite[1], str))
    ):
        return [_citation_ref(cite)]
    if not isinstance(cite, list | tuple):
        raise TypeError(f"cite= takes a quote, a span or a list of them, not {type(cite).__name__}")
    if len(cite) > MAX_CITATIONS:
        raise ValueError(f"at most {MAX_CITATIONS} citations at once, not {len(cite)}")
    return [_citation_ref(c) for c in cite]


def _citation_ref(span: Any) -> dict[str, Any]:
    """One citation as the host takes it: ``{"quote"}``, ``{"start", "end"}`` and an
    optional ``"item"``, every value a plain str or int."""
    if isinstance(span, str):
        return {"quote": _quote(span)}
    if _is_span(span):
        ref: dict[str, Any] = {"start": int.__index__(span[-2]), "end": int.__index__(span[-1])}
        if len(span) == 3:
            ref["item"] = _item(span[0])
        return ref
    if isinstance(span, tuple | list) and len(span) == 2 and isinstance(span[1], str):
        return {"item": _item(span[0]), "quote": _quote(span[1])}
    if isinstance(span, dict):
        unknown = [k for k in span if k not in ("quote", "start", "end", "item")]
        if unknown:
            raise TypeError(f"cite: unknown field {str(unknown[0])[:40]!r}")
        ref = {}
        if span.get("quote") is not None:
            if not isinstance(span["quote"], str):
                raise TypeError("cite: a quote must be a str")
            ref["quote"] = _quote(span["quote"])
        for key in ("start", "end"):
            if span.get(key) is not None:
                if not _is_int(span[key]):
                    raise TypeError(f"cite: {key} must be an int")
                ref[key] = int.__index__(span[key])
        if span.get("item") is not None:
            ref["item"] = _item(span["item"])
        return ref
    raise TypeError(
        "cite takes a quote (str), (start, end), (item, start, end), (item, quote) or a dict, "
        f"not {type(span).__name__}"
    )


def _quote(text: str) -> str:
    text = _plain(text)
    if len(text) > MAX_QUOTE_CHARS:
        raise ValueError(
            f"a quote is at most {MAX_QUOTE_CHARS:,} characters (this one has {len(text):,}): "
            "cite a shorter passage"
        )
    return text


def _item(value: Any) -> str | int:
    if _is_int(value):
        return int.__index__(value)
    if isinstance(value, str):
        return _plain(value)
    raise TypeError(f"cite: an item is a list index or a dict key, not {type(value).__name__}")


def _image_json(value: Any) -> dict[str, str]:
    """An image for ``llm_query(images=...)``: its bytes must be a PNG, JPEG, GIF or WebP
    image, and its type is what the bytes say (the host checks it again and builds the
    data URL itself; a URL or any other content is never sent)."""
    if isinstance(value, Image):
        data: Any = value.data
    elif isinstance(value, bytes | bytearray | memoryview):
        data = value
    else:
        raise TypeError(
            f"images= wants Image objects from the context or image bytes, not "
            f"{type(value).__name__}"
        )
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"an Image's data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    mime = image_mime(data)
    if mime is None:
        raise ValueError("images= takes PNG, JPEG, GIF or WebP image data only")
    return {Image.JSON_TAG: mime, "base64": base64.b64encode(data).decode("ascii")}


def _jsonable(value: Any) -> Any:
    """Contexts passed to children cross as JSON; images keep their tagged form."""
    if isinstance(value, Image):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):  # a dict, or Files (a child gets the texts)
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _plain(text: str) -> str:
    """``text`` as an exact ``str`` (a str subclass could override its methods)."""
    return text if type(text) is str else str.__str__(text)


def _text(value: Any) -> str:
    """A prompt as plain text: whatever the model passes (a list of "content parts", a
    dict with a URL) is its text, never a structure the provider would interpret."""
    return _plain(value if isinstance(value, str) else str(value))


def _as_answer(value: Any) -> str:
    if isinstance(value, str):
        return _plain(value)
    if isinstance(value, dict | list):
        try:
            return _plain(json.dumps(value, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            return _plain(str(value))
    return _plain(str(value))


def _cap_middle(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters in the middle (a traceback's last line
    says what failed), with a note of what was cut."""
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut:,} characters cut ...]\n{text[-half:]}"


def _batch_results(results: Any) -> list[Any]:
    out: list[Any] = []
    for item in results:
        if isinstance(item, dict) and "error" in item:
            out.append(SubcallError(str(item["error"])))
        else:
            out.append(item)
    return out


def _format_traceback(exc: BaseException, filename: str) -> str:
    # Drop the runtime's own frames: the model only needs to see its code.
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
