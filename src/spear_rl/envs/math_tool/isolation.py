"""How model-written code is isolated: the sandbox levels, their command lines, and the uid pool.

Levels, strongest first (`sandbox.py` probes them once per process and logs the one in use):

- ``bwrap`` (bubblewrap): new network, pid, ipc and uts namespaces; only the system directories and
  the Python prefix are visible, read-only; a private, size-capped tmpfs at /tmp is the working dir.
- ``unshare`` (util-linux): new network and pid namespaces; the host file system stays visible (the
  unprivileged uid's file permissions apply); a private working dir.
- ``rlimits``: rlimits, an unprivileged uid, a private working dir and a clean environment only; the
  program can reach the network and see host processes.

Every level sets rlimits (CPU seconds, address space, processes, file size, open files, no core
dumps). When the trainer runs as root, RLIMIT_NPROC would not bind, so every run gets its own
unprivileged uid from a pool, leased with a file lock (parallel runs and parallel trainers never share
one); after the run every process left with that uid is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spear_rl.envs.math_tool.sandbox import SandboxLimits

LEVELS = ("bwrap", "unshare", "rlimits")

# uids handed to sandboxed programs when the trainer is root; override for containers that map
# another range (the default sits below nobody=65534, in the range Debian leaves unallocated).
UID_POOL_BASE = int(os.environ.get("SPEAR_SANDBOX_UID_BASE", "64000"))
UID_POOL_SIZE = int(os.environ.get("SPEAR_SANDBOX_UID_COUNT", "512"))

# Where the program sits inside the bwrap sandbox (its /tmp is a private tmpfs, also the cwd).
BWRAP_WORKDIR = "/tmp"
SCRIPT_NAME = "main.py"

_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_LOCK_DIR = os.path.join(tempfile.gettempdir(), "spear_rl_sandbox_uids")


class SandboxUnavailableError(RuntimeError):
    """The requested isolation level cannot run on this machine (the message says why and what to do)."""


def running_as_root() -> bool:
    return os.geteuid() == 0


def find_tool(name: str) -> str | None:
    """Absolute path of a system tool, searched in the usual system dirs first."""
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin") or shutil.which(
        name
    )


# ---- command lines ------------------------------------------------------------------------------
def rlimit_values(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    """rlimit name -> (soft, hard). The CPU hard limit is one second later so SIGXCPU comes first."""
    mib = 1024 * 1024
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    nproc = limits.max_processes
    if not running_as_root():
        # Without a private uid NPROC counts every process of this user: allow what exists now plus
        # the sandbox's share (a weaker bound; say so in the isolation description).
        nproc += count_user_tasks(os.getuid())
    return {
        "cpu": (cpu, cpu + 1),
        "as": (limits.memory_mb * mib, limits.memory_mb * mib),
        "nproc": (nproc, nproc),
        "fsize": (limits.file_size_mb * mib, limits.file_size_mb * mib),
        "nofile": (limits.max_open_files, limits.max_open_files),
        "core": (0, 0),
    }


def prlimit_prefix(limits: SandboxLimits) -> list[str] | None:
    """`prlimit --cpu=5:6 ... --` (sets the limits without a preexec_fn), or None when missing."""
    tool = find_tool("prlimit")
    if tool is None:
        return None
    args = [tool] + [
        f"--{name}={soft}:{hard}" for name, (soft, hard) in rlimit_values(limits).items()
    ]
    return [*args, "--"]


def preexec_rlimits(limits: SandboxLimits):
    """Fallback when prlimit is missing: set the rlimits in the child (not thread-safe in theory)."""
    import resource

    names = {
        "cpu": resource.RLIMIT_CPU,
        "as": resource.RLIMIT_AS,
        "nproc": resource.RLIMIT_NPROC,
        "fsize": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
        "core": resource.RLIMIT_CORE,
    }
    values = [(names[name], pair) for name, pair in rlimit_values(limits).items()]

    def apply() -> None:
        for which, pair in values:
            resource.setrlimit(which, pair)

    return apply


def drop_privileges_prefix(uid: int | None) -> list[str]:
    """`setpriv` to the leased uid (root only); empty when no uid is leased."""
    if uid is None:
        return []
    tool = find_tool("setpriv")
    if tool is None:
        raise SandboxUnavailableError(
            "running as root but `setpriv` (util-linux) is missing, so the sandboxed program "
            "cannot drop to an unprivileged uid; install util-linux"
        )
    return [tool, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]


def python_prefixes() -> list[str]:
    """Directories the interpreter needs (venv and base install), outside the bound system dirs."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
    }
    system = tuple(f"/{name}" for name in _SYSTEM_DIRS)
    kept: list[str] = []
    for path in sorted(os.path.realpath(p) for p in candidates):
        if path == "/" or any(path == s or path.startswith(s + "/") for s in system):
            continue
        if any(path.startswith(k + "/") for k in kept):
            continue
        kept.append(path)
    return kept


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' -> ['/a', '/a/b'] (not '/' and not the path itself)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def bwrap_command(python: str, script: str, uid: int | None, limits: SandboxLimits) -> list[str]:
    tool = find_tool("bwrap")
    if tool is None:
        raise SandboxUnavailableError(
            "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        )
    cmd = [tool, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    cmd += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if uid is None:
        cmd.append("--unshare-user")  # unprivileged bwrap needs a user namespace
    for name in _SYSTEM_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    prefixes = python_prefixes()
    # parents bwrap creates copy the host's modes (a pyenv under /root would be 0700): open them
    parents = sorted({a for p in prefixes for a in _ancestors(p)}, key=lambda a: a.count("/"))
    for parent in parents:
        cmd += ["--perms", "0755", "--dir", parent]
    for prefix in prefixes:
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--dev", "/dev", "--proc", "/proc"]
    tmpfs_bytes = str(limits.disk_mb * 1024 * 1024)
    cmd += ["--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", BWRAP_WORKDIR]
    cmd += ["--ro-bind", script, f"{BWRAP_WORKDIR}/{SCRIPT_NAME}", "--chdir", BWRAP_WORKDIR, "--"]
    return cmd + drop_privileges_prefix(uid) + [python, "-I", "-u", SCRIPT_NAME]


def unshare_command(python: str, uid: int | None) -> list[str]:
    tool = find_tool("unshare")
    if tool is None:
        raise SandboxUnavailableError("`unshare` (util-linux) is not installed")
    cmd = [tool]
    if uid is None:
        cmd += ["--user", "--map-root-user"]
    cmd += ["--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--"]
    return cmd + drop_privileges_prefix(uid) + [python, "-I", "-u", SCRIPT_NAME]


def rlimits_command(python: str, uid: int | None) -> list[str]:
    return drop_privileges_prefix(uid) + [python, "-I", "-u", SCRIPT_NAME]


def sandbox_command(
    level: str, python: str, script: str, uid: int | None, limits: SandboxLimits
) -> list[str]:
    """The full argv for one run (the rlimits prefix is added by the caller)."""
    if level == "bwrap":
        return bwrap_command(python, script, uid, limits)
    if level == "unshare":
        return unshare_command(python, uid)
    if level == "rlimits":
        return rlimits_command(python, uid)
    raise SandboxUnavailableError(f"unknown isolation level {level!r}; known: {', '.join(LEVELS)}")


def child_environment(home: str) -> dict[str, str]:
    """A clean environment: nothing inherited (no tokens, no keys), one thread per math library."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
    }
    # BLAS pools start one thread per core, which would hit RLIMIT_NPROC on big machines.
    for name in ("OMP", "OPENBLAS", "MKL", "NUMEXPR", "VECLIB_MAXIMUM"):
        env[f"{name}_NUM_THREADS"] = "1"
    return env


# ---- processes by uid ---------------------------------------------------------------------------
def _process_uids(pid: str) -> tuple[int, int] | None:
    """(real, effective) uid of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Uid:"):
                    fields = line.split()
                    return int(fields[1]), int(fields[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


def pids_of_uid(uid: int) -> list[int]:
    """Processes whose real or effective uid is `uid` (zombies included)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            uids = _process_uids(entry)
            if uids is not None and uid in uids:
                found.append(int(entry))
    return found


def count_user_tasks(uid: int) -> int:
    """Tasks (threads count, as for RLIMIT_NPROC) owned by `uid`."""
    total = 0
    for pid in pids_of_uid(uid):
        try:
            total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return total


def kill_uid_processes(uid: int, timeout_s: float = 2.0) -> int:
    """SIGKILL every process of `uid` until none is left alive; returns how many were signalled."""
    signalled = 0
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid in pids_of_uid(uid) if not _is_zombie(pid)]
        if not alive or time.monotonic() > deadline:
            return signalled
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                signalled += 1
        time.sleep(0.005)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def pool_uids() -> range:
    return range(UID_POOL_BASE, UID_POOL_BASE + UID_POOL_SIZE)


@contextlib.contextmanager
def lease_uid() -> Iterator[int | None]:
    """An unprivileged uid used by no process and no other run (root only; None otherwise).

    The lock file stays locked for the whole run; every process of the uid is killed on release.
    """
    if not running_as_root():
        yield None
        return
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    uids = list(pool_uids())
    start = random.randrange(len(uids))  # spread parallel runs over the pool
    for uid in uids[start:] + uids[:start]:
        if _has_passwd_entry(uid):
            continue  # never borrow a real account
        lock = open(os.path.join(_LOCK_DIR, str(uid)), "a")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        try:
            kill_uid_processes(uid)  # leftovers of a crashed earlier holder
            if pids_of_uid(uid):  # unreaped zombies still count toward RLIMIT_NPROC
                continue
            try:
                yield uid
            finally:
                kill_uid_processes(uid)
            return
        finally:
            lock.close()
    raise SandboxUnavailableError(
        f"all {len(uids)} sandbox uids from {UID_POOL_BASE} are busy; lower the number of parallel "
        "code runs or raise SPEAR_SANDBOX_UID_COUNT"
    )


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
