"""Locks that let several processes work through one experiment folder at once.

- A **run lock** (`RUN_DIR/.run.lock`) says which process runs a run: an exclusive `flock` on
  the file, held for the whole run, and the holder's pid, host and start time written in it for
  people. The kernel drops the flock when its process dies however it dies, so a lock file that
  nobody holds is stale: the next process takes it over and says whose it was.
- A **folder lock** (`OUT/.folder.lock`, never removed) serialises the read-change-write of the
  files the processes share (runs.json and the tables).

POSIX only (fcntl); on NFS, Linux maps flock to byte-range locks, which its lock manager shares.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

RUN_LOCK = ".run.lock"
FOLDER_LOCK = ".folder.lock"


class RunBusy(Exception):
    """Another live process holds the run; str() names it."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock for the block (waits for another holder)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


class RunLock:
    """This process's hold on a run; release it (or leave the `with` block) when the run ends."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd < 0:
            return
        # unlink while still holding it: a waiter that opened the old file sees it is gone
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(run_dir: Path, echo: Callable[[str], None] = print) -> RunLock:
    """Take the run's lock, or raise RunBusy naming the live process that holds it. A lock file
    left by a process that died (no flock on it) is taken over, with a message."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise RunBusy(f"{run_dir.name} is being run by {holder}") from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # its holder released (and removed) it between our open and flock
            os.close(fd)
            continue
        previous = _read(fd)
        if previous:
            echo(f"{run_dir}: taking over a stale lock: {_describe(previous)} no longer holds it")
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        return RunLock(path, fd)


def _read(fd: int) -> dict:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that is just starting"
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
