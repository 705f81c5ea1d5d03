"""A memory and process cgroup per sandboxed run, so limits bind the whole process tree.

rlimits bound each process (six forked children may each use `memory_mb`); a cgroup bounds them all
together, the private tmpfs files they write included (tmpfs pages are charged to the cgroup). Both
cgroup v2 (a delegated subtree with the memory and pids controllers) and v1 (the memory and pids
hierarchies) are used where this process may create child groups (root, or a delegated v2 subtree).
`support()` says once per process whether that works here and, if not, why.

The child enters the group before anything runs: a `sh` prefix writes its own pid to the group's
`cgroup.procs` and then `exec`s the sandbox command, so every descendant is born inside.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

_MIB = 1024 * 1024
_counter = itertools.count()
_support: tuple[str | None, str] | None = None
_support_lock = threading.Lock()
# sh -c SCRIPT sh N file1..fileN cmd...: join N cgroups, then become cmd
_ENTER = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n - 1)); done; exec "$@"'


@dataclass
class RunCgroup:
    version: str  # "v1" | "v2"
    dirs: list[str]  # the groups made for this run (v1: memory, pids; v2: one)
    memory_dir: str

    def enter_prefix(self) -> list[str]:
        procs = [os.path.join(d, "cgroup.procs") for d in self.dirs]
        return ["/bin/sh", "-c", _ENTER, "spear-cgroup-enter", str(len(procs)), *procs]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this run for memory."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        try:
            with open(os.path.join(self.memory_dir, name), encoding="ascii") as events:
                for line in events:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (OSError, ValueError):
            return False
        return False


def _self_groups() -> dict[str, str]:
    """controller list -> path, from /proc/self/cgroup ("" is the v2 entry)."""
    groups = {}
    with open("/proc/self/cgroup", encoding="ascii") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            groups[controllers] = path
    return groups


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4], fstype, options))
    return found


@functools.cache  # where this process sits does not change; mountinfo is not re-read per call
def _v2_parent() -> tuple[str | None, str]:
    groups = _self_groups()
    mount = next((m for m, fstype, _ in _mounts() if fstype == "cgroup2"), None)
    if mount is None or "" not in groups:
        return None, "no cgroup2 mount"
    parent = os.path.join(mount, groups[""].lstrip("/"))
    try:
        with open(os.path.join(parent, "cgroup.controllers"), encoding="ascii") as f:
            available = f.read().split()
        with open(os.path.join(parent, "cgroup.subtree_control"), encoding="ascii") as f:
            enabled = f.read().split()
    except OSError as err:
        return None, f"cgroup2 at {parent} unreadable ({err.strerror})"
    missing = [c for c in ("memory", "pids") if c not in enabled]
    if any(c not in available for c in missing):
        return None, f"cgroup2 at {parent} offers no {'/'.join(missing)} controller"
    if missing:
        try:  # fails (EBUSY) when this group holds processes itself, unless it is the root
            with open(os.path.join(parent, "cgroup.subtree_control"), "w", encoding="ascii") as f:
                f.write(" ".join(f"+{c}" for c in missing))
        except OSError as err:
            return None, f"cannot enable {'/'.join(missing)} under {parent} ({err.strerror})"
    return parent, ""


@functools.cache
def _v1_parents() -> tuple[dict[str, str] | None, str]:
    groups = _self_groups()
    parents = {}
    for controller in ("memory", "pids"):
        mount = next(
            (
                m
                for m, fstype, opts in _mounts()
                if fstype == "cgroup" and controller in opts.split(",")
            ),
            None,
        )
        path = next((p for c, p in groups.items() if controller in c.split(",")), None)
        if mount is None or path is None:
            return None, f"no cgroup v1 {controller} hierarchy"
        parents[controller] = os.path.join(mount, path.lstrip("/"))
    return parents, ""


def support() -> tuple[str | None, str]:
    """("v2" | "v1", "") when a test group can be made here, else (None, why); probed once."""
    global _support
    with _support_lock:
        if _support is None:
            _support = _probe()
        return _support


def _probe() -> tuple[str | None, str]:
    """Make a group and move a process into it, for each version in turn."""
    reasons = []
    for version in ("v2", "v1"):
        try:
            with make(version, memory_mb=64, max_processes=4) as group:
                joined = subprocess.run(
                    [*group.enter_prefix(), "/bin/sh", "-c", "exit 0"],
                    capture_output=True,
                    timeout=10,
                )
                if joined.returncode != 0:
                    raise _Unavailable(f"cannot join it: {joined.stderr.decode()[-200:].strip()}")
            _remove_stale(version)
            return version, ""
        except (OSError, ValueError, IndexError, subprocess.SubprocessError, _Unavailable) as err:
            reasons.append(f"{version}: {err}")
    return None, "; ".join(reasons)


class _Unavailable(Exception):
    pass


_NAME = re.compile(r"spear_sandbox_(\d+)_\d+")


def _remove_stale(version: str) -> None:
    """Groups left by trainers that were killed mid-call (their pid is gone): empty and remove."""
    if version == "v2":
        parents = [_v2_parent()[0]]
    else:
        found = _v1_parents()[0]
        parents = list(found.values()) if found else []
    for parent in filter(None, parents):
        for entry in os.listdir(parent):
            match = _NAME.fullmatch(entry)
            if match and not os.path.exists(f"/proc/{match.group(1)}"):
                with contextlib.suppress(OSError):
                    _empty_and_remove(os.path.join(parent, entry))


@contextlib.contextmanager
def make(version: str, memory_mb: int, max_processes: int) -> Iterator[RunCgroup]:
    """A fresh group (or pair, v1) with the limits; on exit its processes are killed and it goes."""
    name = f"spear_sandbox_{os.getpid()}_{next(_counter)}"
    # the sandbox's own helpers (sh, bwrap and its pid 1, setpriv) need a few pids of their own
    pids_max = str(max_processes + 4)
    made: list[str] = []
    try:
        if version == "v2":
            parent, why = _v2_parent()
            if parent is None:
                raise _Unavailable(why)
            group = os.path.join(parent, name)
            os.mkdir(group)
            made.append(group)
            _write(group, "memory.max", str(memory_mb * _MIB))
            _write(group, "memory.swap.max", "0", optional=True)
            _write(group, "pids.max", pids_max)
            run = RunCgroup("v2", made, group)
        else:
            parents, why = _v1_parents()
            if parents is None:
                raise _Unavailable(why)
            for controller in ("memory", "pids"):
                group = os.path.join(parents[controller], name)
                os.mkdir(group)
                made.append(group)
            memory = made[0]
            _write(memory, "memory.limit_in_bytes", str(memory_mb * _MIB))
            _write(memory, "memory.memsw.limit_in_bytes", str(memory_mb * _MIB), optional=True)
            _write(made[1], "pids.max", pids_max)
            run = RunCgroup("v1", made, memory)
        yield run
    finally:
        for group in reversed(made):
            _empty_and_remove(group)


def _write(group: str, name: str, value: str, optional: bool = False) -> None:
    path = os.path.join(group, name)
    if optional and not os.path.exists(path):
        return
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def _empty_and_remove(group: str, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(os.path.join(group, "cgroup.procs"), encoding="ascii") as f:
                pids = [int(line) for line in f if line.strip()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(group)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
