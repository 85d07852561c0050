"""How isolated a worker can be on this machine, and the commands that make it so.

Three levels, strongest first:

``bubblewrap``
    ``bwrap`` builds fresh user, pid, network, ipc and uts namespaces and a private
    root filesystem: the Python installation and the system libraries read-only, the
    sandbox's private directory read-write, nothing else (no home directory, no
    ``/etc``, no ``/usr/bin``, no host ``/proc``). Loopback only, no network.
``unshare``
    The same, built by the worker itself with ``unshare(2)``, ``mount(2)`` and
    ``pivot_root(2)`` (for machines without ``bwrap``). Started as root, it builds the
    namespaces with real privileges and then runs as an unprivileged user.
``process``
    A separate process with a clean environment, a private working directory and
    resource limits, nothing more: it can read whatever the user can read, use the
    network and signal the user's other processes.

The level is chosen once per process by trying to start a worker (see
:mod:`recursa.repl.subprocess`); this module only describes and builds.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Level = Literal["bubblewrap", "unshare", "process"]
LEVELS: tuple[Level, ...] = ("bubblewrap", "unshare", "process")
#: Force a level ("bubblewrap", "unshare", "process") for every sandbox of this process.
ENV_VAR = "RECURSA_SANDBOX_ISOLATION"
#: The unprivileged user a sandbox runs as when the host runs as root.
NOBODY = (65534, 65534)

# Where the private directory's parts appear inside a namespaced sandbox.
INSIDE_HOME = "/sandbox"
INSIDE_TMP = "/tmp"
INSIDE_LIB = "/opt/recursa"

#: An isolation level and the (uid, gid) to run as, if not the host's own.
Candidate = tuple[Level, tuple[int, int] | None]

MountKind = Literal["ro", "rw", "symlink", "dir", "proc", "dev"]


@dataclass(frozen=True)
class Mount:
    kind: MountKind
    src: str  # host path (ro/rw), link target (symlink), unused otherwise
    dst: str  # path inside the sandbox


@dataclass(frozen=True)
class Layout:
    """A sandbox's private directory on the host."""

    base: Path

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def lib(self) -> Path:
        return self.base / "lib"

    @property
    def root(self) -> Path:
        return self.base / "root"  # mount point of the unshare level's new root

    @property
    def log(self) -> Path:
        return self.base / "worker.log"


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@functools.cache
def _id_map(kind: str) -> tuple[tuple[int, int, int], ...] | None:
    """This process's user namespace's uid or gid map (None where there is none to read)."""
    try:
        with open(f"/proc/self/{kind}_map") as fh:
            rows = [line.split() for line in fh if line.strip()]
        return tuple((int(a), int(b), int(c)) for a, b, c in rows)
    except (OSError, ValueError):
        return None


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the initial one (a
    rootless container, ``unshare --map-root-user``): its uid map is not the identity."""
    found = _id_map("uid")
    return found is not None and found != ((0, 0, 4294967295),)


def can_switch_to(ids: tuple[int, int]) -> bool:
    """Whether this (root) process may become ``ids``: both are mapped in its user
    namespace (in a rootless container only root, or a few ids, usually are)."""
    for kind, wanted in (("uid", ids[0]), ("gid", ids[1])):
        found = _id_map(kind)
        if found is not None and not any(a <= wanted < a + n for a, _, n in found):
            return False
    return True


def privileged() -> bool:
    """Root that can build namespaces itself and then drop to :data:`NOBODY`."""
    return running_as_root() and can_switch_to(NOBODY)


def kernel_root() -> bool:
    """uid 0 of the initial user namespace (exempt from RLIMIT_NPROC), not the root of
    a user namespace, who is an ordinary user to the kernel."""
    return running_as_root() and not in_user_namespace()


def candidates(requested: Level | None) -> list[Candidate]:
    """(level, run_as) pairs to try, best first. Root in a user namespace where nobody
    is not mapped (rootless containers) gets the unprivileged user's list."""
    found: list[Candidate]
    if not sys.platform.startswith("linux"):
        found = [("process", None)]
    elif privileged():
        # uid 0 is exempt from RLIMIT_NPROC and owns root's files: prefer running as nobody.
        found = [
            ("unshare", NOBODY),
            ("bubblewrap", NOBODY),
            ("bubblewrap", None),
            ("process", NOBODY),
            ("process", None),
        ]
    else:
        found = [("bubblewrap", None), ("unshare", None), ("process", None)]
    if requested is not None:
        fallback: list[Candidate] = [(requested, None)]
        found = [c for c in found if c[0] == requested] or fallback
    return found


def bwrap_path() -> str | None:
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.path.exists("/usr/bin/bwrap") else None)


def describe(level: Level, *, run_as: tuple[int, int] | None, no_process_limit: str = "") -> str:
    """The ``isolation`` string: the level and what it does and does not give."""
    limits = "rlimits"
    if no_process_limit:
        limits += f" (no process-count limit: {no_process_limit})"
    if level == "process":
        return f"process: {limits} only (no namespaces available)"
    who = ", runs as nobody" if run_as else ""
    return f"{level}: no network, private filesystem, own process tree{who}, {limits}"


# -- the filesystem a namespaced worker sees ----------------------------------------------
_TOO_BROAD = {"/", "/usr", "/usr/local", "/opt", "/home", "/root", "/var", "/etc", "/tmp", "/srv"}


def _too_broad(path: str) -> bool:
    if path in _TOO_BROAD:
        return True
    home = os.path.expanduser("~")
    return home != "~" and (path == home or home.startswith(path.rstrip("/") + "/"))


@functools.cache
def python_mounts() -> tuple[Mount, ...]:
    """Read-only mounts that let ``sys.executable -I -S`` start and import the stdlib and
    the environment's site-packages: the prefixes (venv and base), the sysconfig library
    directories, and the interpreter's symlink chain."""
    roots: set[str] = set()
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        if not _too_broad(prefix):
            roots.add(prefix)
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars or None)
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if key in paths:
                roots.add(paths[key])
    roots.update(site_packages())
    libdir = sysconfig.get_config_var("LIBDIR")
    if isinstance(libdir, str) and not _too_broad(libdir):
        roots.add(libdir)
    mounts = [Mount("ro", p, p) for p in _outermost(p for p in roots if os.path.isdir(p))]
    covered = [m.dst for m in mounts] + [m.dst for m in system_mounts()]
    for hop, target in _symlink_chain(sys.executable):
        if not any(_under(hop, root) for root in covered):
            mounts.append(Mount("symlink", target, hop) if target else Mount("ro", hop, hop))
    return tuple(mounts)


@functools.cache
def site_packages() -> tuple[str, ...]:
    """The environment's site-packages, added to the worker's sys.path (it starts with -S)."""
    found = [p for p in site.getsitepackages() if os.path.isdir(p)]
    return tuple(dict.fromkeys(found))


@functools.cache
def system_mounts() -> tuple[Mount, ...]:
    """Shared libraries (and the dynamic loader's cache), read-only; merged-/usr symlinks kept."""
    mounts: list[Mount] = []
    for path in (
        "/usr/lib",
        "/usr/lib64",
        "/usr/lib32",
        "/usr/libx32",
        "/usr/local/lib",
        "/lib",
        "/lib64",
        "/lib32",
        "/libx32",
    ):
        if os.path.islink(path):
            mounts.append(Mount("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            mounts.append(Mount("ro", path, path))
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        if os.path.exists(path):
            mounts.append(Mount("ro", path, path))
    return tuple(mounts)


def mount_plan(layout: Layout) -> list[Mount]:
    """Every mount of a namespaced worker, parents before children.

    Ordered by depth, so a mount is never hidden by a later one over a parent of its
    path: a Python installation or venv under ``/tmp`` is bound inside the private
    ``/tmp`` (its mount point made there), not covered by it.
    """
    plan = [*system_mounts(), *python_mounts()]
    plan += [
        Mount("ro", str(layout.lib), INSIDE_LIB),
        Mount("rw", str(layout.home), INSIDE_HOME),
        Mount("rw", str(layout.tmp), INSIDE_TMP),
        Mount("dev", "", "/dev"),
        Mount("proc", "", "/proc"),
    ]
    return sorted(plan, key=lambda m: len(Path(m.dst).parts))  # stable: same depth, same order


def bwrap_command(bwrap: str, plan: Sequence[Mount], command: Sequence[str]) -> list[str]:
    argv = [
        bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
        "--as-pid-1",  # the worker is its own init, one that the REPL cannot ptrace
    ]  # fmt: skip
    for mount in plan:
        if mount.kind == "ro":
            argv += ["--ro-bind", mount.src, mount.dst]
        elif mount.kind == "rw":
            argv += ["--bind", mount.src, mount.dst]
        elif mount.kind == "symlink":
            argv += ["--symlink", mount.src, mount.dst]
        elif mount.kind == "dir":
            argv += ["--dir", mount.dst]
        elif mount.kind == "proc":
            argv += ["--proc", mount.dst]
        elif mount.kind == "dev":
            shm = f"{mount.dst}/shm"
            argv += ["--dev", mount.dst, "--size", str(64 << 20), "--tmpfs", shm]
            argv += ["--remount-ro", mount.dst]
    argv += ["--chdir", INSIDE_HOME, "--remount-ro", "/", "--", *command]
    return argv


def unshare_spec(
    layout: Layout, plan: Sequence[Mount], *, run_as: tuple[int, int] | None
) -> dict[str, object]:
    """The worker's own recipe for the unshare level (see ``worker.enter_sandbox``)."""
    return {
        "root": str(layout.root),
        "mounts": [[m.kind, m.src, m.dst] for m in plan],
        "privileged": privileged(),
        "run_as": list(run_as) if run_as else None,
        "host_pid": os.getpid(),
    }


def worker_env(home: str, tmp: str) -> dict[str, str]:
    """The worker's whole environment: nothing of the host's (no API keys, no proxies)."""
    env = {
        "HOME": home,
        "TMPDIR": tmp,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # numeric libraries start one thread per core; keep them under the process limit
        "OMP_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
    }
    if sys.platform == "win32":  # Windows cannot start Python without these
        for key in ("SYSTEMROOT", "WINDIR", "COMSPEC"):
            if key in os.environ:
                env[key] = os.environ[key]
    return env


def _outermost(paths: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths}, key=len):
        if not any(_under(path, k) for k in kept):
            kept.append(path)
    return kept


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _symlink_chain(path: str) -> list[tuple[str, str | None]]:
    """Each hop from ``path`` to the real file: (hop, link target) or (file, None)."""
    chain: list[tuple[str, str | None]] = []
    current = os.path.abspath(path)
    for _ in range(40):
        if os.path.islink(current):
            target = os.readlink(current)
            chain.append((current, target))
            current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        else:
            chain.append((current, None))
            break
    return chain
