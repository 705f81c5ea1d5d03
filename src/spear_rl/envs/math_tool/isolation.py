"""How model-written code is isolated: the sandbox levels, their command lines, and the uid pool.

Levels, strongest first (`sandbox.py` probes them once per process and logs the one in use):

- ``bwrap`` (bubblewrap), the only level that keeps the promise (docs/sandbox.md): new network, pid,
  ipc, uts and mount namespaces with their own /proc; the file system holds only the read-only
  runtime (the system's /usr, /bin and /lib, a few loader files of /etc, the trainer's own Python
  with its standard library and RUNTIME_PACKAGES, nothing else of its site-packages) and fresh
  private tmpfs mounts of `disk_mb` each at /tmp (the working dir) and /dev/shm.
- ``unshare`` (util-linux), unsafe: new network and pid namespaces; the host file system, its /tmp
  and its Unix sockets stay reachable with the uid's permissions.
- ``rlimits``, unsafe: rlimits, an unprivileged uid, a private working dir and a clean environment
  only; the program can reach the network and see host processes.

Every level sets rlimits (CPU seconds, address space, processes, file size, open files, no core
dumps) and, where this process may make one, runs in its own memory + pids cgroup (`cgroups.py`).
When the trainer runs as root, RLIMIT_NPROC would not bind, so every run gets its own unprivileged
uid from a pool, leased with a file lock (parallel runs and parallel trainers never share one); after
the run every process left with that uid is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import os
import pwd
import random
import shutil
import signal
import site
import sys
import tempfile
import time
from collections.abc import Iterator

from spear_rl.envs.math_tool.limits import LEVELS, SandboxLimits, SandboxUnavailableError

# uids handed to sandboxed programs when the trainer is root; override for containers that map
# another range (the default sits below nobody=65534, in the range Debian leaves unallocated).
UID_POOL_BASE = int(os.environ.get("SPEAR_SANDBOX_UID_BASE", "64000"))
UID_POOL_SIZE = int(os.environ.get("SPEAR_SANDBOX_UID_COUNT", "512"))

# Where the program sits inside the bwrap sandbox (its /tmp is a private tmpfs, also the cwd).
BWRAP_WORKDIR = "/tmp"
SCRIPT_NAME = "main.py"

_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# of /etc only what the dynamic loader and time functions read (no passwd, hosts, or secrets)
_ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives")
# Third-party packages model code may import at the bwrap level (when installed beside the trainer):
# numbers and algebra for a math agent; everything else in site-packages is hidden.
RUNTIME_PACKAGES = ("numpy", "sympy", "mpmath")
_LOCK_DIR = os.path.join(tempfile.gettempdir(), "spear_rl_sandbox_uids")


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
    literal = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    literal.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    # both spellings of a symlinked prefix: the interpreter uses one, the files live at the other
    candidates = {os.path.abspath(p) for p in literal} | {os.path.realpath(p) for p in literal}
    system = tuple(f"/{name}" for name in _SYSTEM_DIRS)
    kept: list[str] = []
    for path in sorted(candidates):
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


def hidden_site_dirs() -> list[str]:
    """The interpreter's site-packages dirs (both spellings when symlinked), hidden in the sandbox."""
    dirs = {d for d in site.getsitepackages() if os.path.isdir(d)}
    return sorted({os.path.abspath(d) for d in dirs} | {os.path.realpath(d) for d in dirs})


def runtime_package_entries(site_dir: str) -> list[str]:
    """Top-level files and dirs of RUNTIME_PACKAGES installed in `site_dir` (real path compared)."""
    real_site = os.path.realpath(site_dir)
    entries: set[str] = set()
    for name in RUNTIME_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if os.path.realpath(str(dist.locate_file(""))) != real_site:
            continue
        tops = {str(f).split("/")[0] for f in dist.files or []} - {"..", "__pycache__", ""}
        if not tops:  # a distro package without a RECORD: the import package itself
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                tops = {os.path.basename(list(spec.submodule_search_locations)[0])}
        entries |= {t for t in tops if os.path.exists(os.path.join(real_site, t))}
    return sorted(entries)


def _bind_prefix(prefix: str) -> list[str]:
    """Bind an install prefix read-only, its own dir opened to 0755 (a venv made in a 0700 temp dir
    would shut out the sandbox's uid, and Python would silently fall back to its base install)."""
    args = ["--perms", "0755", "--dir", prefix]
    for entry in sorted(os.listdir(prefix)):
        path = os.path.join(prefix, entry)
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return args


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
    cmd += ["--perms", "0755", "--dir", "/etc"]  # (made 0700 otherwise: the loader could not read)
    for name in _ETC_ENTRIES:
        if os.path.lexists(f"/etc/{name}"):
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    tmpfs_bytes = str(limits.disk_mb * 1024 * 1024)
    # /tmp first: an interpreter installed under the host's /tmp is bound on top of it below
    cmd += ["--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", BWRAP_WORKDIR]
    prefixes = python_prefixes()
    # parents bwrap creates copy the host's modes (a pyenv under /root would be 0700): open them
    parents = sorted({a for p in prefixes for a in _ancestors(p)}, key=lambda a: a.count("/"))
    for parent in parents:
        if parent != BWRAP_WORKDIR:
            cmd += ["--perms", "0755", "--dir", parent]
    for prefix in prefixes:
        cmd += _bind_prefix(prefix)
    # the defined runtime: site-packages emptied, then only RUNTIME_PACKAGES put back
    for site_dir in hidden_site_dirs():
        cmd += ["--perms", "0755", "--tmpfs", site_dir]
        for entry in runtime_package_entries(site_dir):
            real = os.path.join(os.path.realpath(site_dir), entry)
            cmd += ["--ro-bind", real, os.path.join(site_dir, entry)]
        cmd += ["--remount-ro", site_dir]  # nothing new can be written beside them
    cmd += ["--dev", "/dev", "--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", "/dev/shm"]
    cmd += ["--proc", "/proc"]
    # bwrap's own root and /dev are tmpfs the sandbox uid owns when unprivileged: make them read-only
    # so /tmp and /dev/shm (each disk_mb) are the only places it can write
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/"]
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
