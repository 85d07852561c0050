"""Opt-in sandbox: the same worker, in a throwaway Docker container.

``docker run --rm -i --init --network none --read-only --cap-drop ALL`` with a
memory cap, a pids limit and rlimits; the private directory is mounted at
``/sandbox`` (read-write), the worker's code at ``/opt/recursa`` and the context
file at ``/run/recursa/context`` (both read-only). Frames travel over the
container's stdin/stdout. It needs a running Docker daemon that can see this
machine's temporary directory, and an image with Python 3 (by default the
official ``python:<major>.<minor>-slim`` of the host's version).

It adds a container boundary (seccomp profile, cgroup limits) on top of what the
``subprocess`` sandbox gives; starting a worker takes about a second, not tens of
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import SandboxError
from . import isolation
from .base import SandboxConfig
from .channel import WorkerLink
from .isolation import Layout
from .process import (
    Limits,
    ProcessGroup,
    WorkerProcess,
    WorkerSandbox,
    log_tail,
    make_layout,
    read_hello,
    reap,
)

__all__ = ["DockerSandbox", "Limits", "default_image", "docker_available", "docker_command"]

CONTEXT_INSIDE = "/run/recursa/context"


@functools.cache
def docker_available(docker: str = "docker") -> bool:
    """Whether a Docker daemon answers (``docker info``); asked once per process."""
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def default_image() -> str:
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


@dataclass(eq=False)
class DockerWorker(WorkerProcess):
    """A worker in a container: signals go through ``docker kill``."""

    name: str = ""
    docker: str = "docker"

    async def interrupt(self) -> None:  # --init forwards it to the worker
        await _docker_quiet(self.docker, "kill", "--signal", "SIGINT", self.name)

    async def kill(self) -> None:
        await _docker_quiet(self.docker, "kill", self.name)
        self.group.kill()  # the docker client
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        finally:
            await self.link.aclose()
            self.group.close()


async def _docker_quiet(docker: str, *args: str) -> None:
    with contextlib.suppress(OSError):
        proc = await asyncio.create_subprocess_exec(
            docker, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def docker_command(
    *,
    docker: str,
    image: str,
    name: str,
    layout: Layout,
    context_path: Path,
    limits: Limits,
    user: tuple[int, int] | None,
    config: dict[str, Any],
) -> list[str]:
    argv = [
        docker, "run", "--rm", "-i", "--init", "--name", name,
        "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--ipc", "none",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
        "-v", f"{layout.lib}:{isolation.INSIDE_LIB}:ro",
        "-v", f"{layout.home}:{isolation.INSIDE_HOME}:rw",
        "-v", f"{context_path}:{CONTEXT_INSIDE}:ro",
        "-w", isolation.INSIDE_HOME,
    ]  # fmt: skip
    for key, value in isolation.worker_env(isolation.INSIDE_HOME, isolation.INSIDE_TMP).items():
        if key != "PATH":  # the image's PATH finds its python
            argv += ["-e", f"{key}={value}"]
    if user is not None:
        argv += ["--user", f"{user[0]}:{user[1]}"]
    if limits.processes is not None:
        argv += ["--pids-limit", str(limits.processes)]
    if limits.memory_bytes is not None:
        argv += ["--memory", f"{limits.memory_bytes}b", "--memory-swap", f"{limits.memory_bytes}b"]
    if limits.file_size_bytes is not None:
        argv += ["--ulimit", f"fsize={limits.file_size_bytes}"]
    if limits.open_files is not None:
        argv += ["--ulimit", f"nofile={limits.open_files}:{limits.open_files}"]
    argv += [image, "python3", "-I", "-B", f"{isolation.INSIDE_LIB}/worker.py", json.dumps(config)]
    return argv


class DockerSandbox(WorkerSandbox):
    """The REPL in a Docker container (opt-in; needs a running daemon)."""

    start_timeout: ClassVar[float] = 300.0  # the first start may pull the image

    def __init__(
        self,
        *,
        image: str | None = None,
        limits: Limits | None = None,
        docker: str = "docker",
        grace_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        self.image = image or default_image()
        self.limits = limits or Limits()
        self.docker = docker
        self.grace_seconds = grace_seconds
        self._layout: Layout | None = None
        self._context_path: Path | None = None
        self._format = "text"

    @property
    def isolation(self) -> str:
        return (
            "docker: no network, read-only container filesystem, no capabilities, "
            "memory and process limits, rlimits"
        )

    async def start(self, config: SandboxConfig) -> None:
        if self._config is not None:
            raise SandboxError("the sandbox was already started")
        if not await asyncio.to_thread(docker_available, self.docker):
            raise SandboxError(
                f"the docker sandbox needs a running Docker daemon (`{self.docker} info` failed)"
            )
        self._config = config
        try:
            # pipes carry no descriptors: linked files are copied into the pack
            self._context_path, self._format = await config.context.afile(standalone=True)
            self._layout = make_layout()
            self._leftovers.base = self._layout.base
            if isolation.running_as_root():
                for d in (self._layout.home, self._layout.tmp):
                    os.chown(d, *isolation.NOBODY)
                os.chmod(self._layout.base, 0o711)
                if config.context.path is None:  # our private 0600 file: the container's
                    os.chown(self._context_path, *isolation.NOBODY)  # user reads it
            self._worker = await self._spawn()
        except BaseException:
            self._closed = True
            self._leftovers.clean()
            raise

    def _user(self) -> tuple[int, int] | None:
        if not hasattr(os, "getuid"):
            return None
        return isolation.NOBODY if isolation.running_as_root() else (os.getuid(), os.getgid())

    def command(self, name: str) -> list[str]:
        """The ``docker run`` command line of one worker."""
        assert self._layout is not None and self._context_path is not None
        assert self._config is not None
        cfg = self._config
        config = {
            "channel": {"stdio": True},
            "context": {"path": CONTEXT_INSIDE, "format": self._format},
            "cwd": isolation.INSIDE_HOME,
            "runtime": f"{isolation.INSIDE_LIB}/runtime.py",
            # the container's cgroup limits processes (RLIMIT_NPROC would count the uid
            # across every container and the host)
            "limits": {**self.limits.to_dict(), "processes": None},
            "namespaced": True,
            "repl": {
                "subcalls": cfg.subcalls,
                "tools": [t.to_dict() for t in cfg.tools],
                "max_output_chars": cfg.max_output_chars,
            },
        }
        return docker_command(
            docker=self.docker,
            image=self.image,
            name=name,
            layout=self._layout,
            context_path=self._context_path,
            limits=self.limits,
            user=self._user(),
            config=config,
        )

    async def _spawn(self) -> WorkerProcess:
        assert self._layout is not None and self._config is not None
        name = f"recursa-{uuid.uuid4().hex[:12]}"
        with self._layout.log.open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *self.command(name),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                start_new_session=sys.platform != "win32",
            )
        group = ProcessGroup(proc)
        assert proc.stdout is not None and proc.stdin is not None
        try:
            hello = await asyncio.wait_for(
                read_hello(proc.stdout, ended="the container ended before the worker said hello"),
                self.start_timeout,
            )
        except BaseException as exc:
            proc.stdin.close()
            await _docker_quiet(self.docker, "kill", name)
            await reap(proc, group)
            if isinstance(exc, Exception):
                raise SandboxError(
                    f"the docker worker did not start: {exc}; {log_tail(self._layout.log)}"
                ) from None
            raise
        link = WorkerLink(proc.stdout, proc.stdin, self._config.host)
        return DockerWorker(
            proc, group, link, proc.pid, wrapped=True, log_path=self._layout.log,
            limits=hello.limits, name=name, docker=self.docker,
        )  # fmt: skip
