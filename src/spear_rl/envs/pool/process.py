"""`env.workers=process`: persistent worker processes on this machine, each hosting several envs.

Each worker is a fresh interpreter (`process_worker.py`) that imports only the env side of
spear-rl: no torch, no copy of the trainer's state, and not the script that started the run (which
multiprocessing's spawn would re-import). It rebuilds its envs from the picklable factory
(`EnvSpec`: the env name and kwargs). Parent and worker talk over a socket pair: the parent sends a
worker all its jobs of a round in one message, the worker answers each job as it finishes. A
killed worker shows as the socket's end of file; a hung one is killed (SIGKILL) when its running
job passes the timeout.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import ENV_POOLS
from spear_rl.envs.pool.host import Reply
from spear_rl.envs.pool.workers import Job, WorkerPool

# seconds a worker gets to exit after being asked to, before it is killed
STOP_GRACE_S = 5.0


class ProcessPool(WorkerPool):
    backend = "process"

    def __init__(self, factory: Callable[[], Env], num_workers: int, timeout_s: float) -> None:
        try:
            self._factory_bytes = pickle.dumps(factory)
        except Exception as err:
            raise TypeError(
                f"env.workers=process needs a picklable env factory (an EnvSpec), got {factory!r}: "
                f"{err}"
            ) from None
        self._procs: list[subprocess.Popen | None] = [None] * max(num_workers, 0)
        self._conns: list[Connection | None] = [None] * max(num_workers, 0)
        super().__init__(factory, num_workers, timeout_s)

    def _start_worker(self, w: int) -> None:
        parent, child = socket.socketpair()
        with child:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spear_rl.envs.pool.process_worker", str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
            )
        conn = Connection(parent.detach())
        conn.send(list(sys.path))
        conn.send_bytes(self._factory_bytes)
        self._procs[w], self._conns[w] = proc, conn

    def _send(self, w: int, jobs: list[Job]) -> None:
        conn = self._conns[w]
        assert conn is not None
        # a dead worker's socket may refuse the message; the next poll reports the death
        with contextlib.suppress(OSError):
            conn.send([(j.op, j.slot, j.arg) for j in jobs])

    def _poll(self, busy: list[int], timeout: float | None) -> list[tuple[int, Reply | None, str]]:
        wait([self._conns[w] for w in busy], timeout)
        out: list[tuple[int, Reply | None, str]] = []
        for w in busy:
            conn, proc = self._conns[w], self._procs[w]
            broken = False
            try:
                while conn.poll():
                    out.append((w, conn.recv(), ""))
            except (EOFError, OSError):  # the worker's end closed: it is gone
                broken = True
            if broken or proc.poll() is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(STOP_GRACE_S)
                out.append((w, None, _exit_detail(proc.returncode)))
        return out

    def _is_dead(self, w: int) -> bool:
        return self._procs[w].poll() is not None

    def _stop_worker(self, w: int, kill: bool) -> None:
        proc, conn = self._procs[w], self._conns[w]
        if proc is None:
            return
        if not kill and proc.poll() is None:
            with contextlib.suppress(OSError):
                conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_S)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with contextlib.suppress(OSError):
            conn.close()
        self._procs[w] = self._conns[w] = None

    def process_ids(self) -> list[int]:
        """Worker pids, read from this side (no round trip): for tests and for `kill`."""
        return [p.pid for p in self._procs]


def _exit_detail(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"the worker process was killed by {signal.Signals(-exitcode).name}"
    return f"the worker process exited with code {exitcode}"


def default_num_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@ENV_POOLS.register("process")
def make_process_pool(
    factory: Callable[[], Env], *, timeout_s: float, num_workers: int, **_: Any
) -> ProcessPool:
    return ProcessPool(factory, num_workers or default_num_workers(), timeout_s)
