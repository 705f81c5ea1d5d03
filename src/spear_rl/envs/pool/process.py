"""`env.workers=process`: persistent worker processes on this machine, each hosting several envs.

Workers are started with `spawn` (a clean interpreter: no copy of the trainer's torch threads or
CUDA state) and rebuild their envs from the picklable factory (`EnvSpec`: the env name and kwargs).
Parent and worker talk over one pipe: the parent sends a worker all its jobs of a round in one
message, the worker answers each job as it finishes. A killed worker is seen through its process
sentinel; a hung one is killed (SIGKILL) when its running job passes the timeout.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import ENV_POOLS
from spear_rl.envs.pool.host import EnvHost, Reply
from spear_rl.envs.pool.workers import Job, WorkerPool

# seconds a worker gets to exit after being asked to, before it is killed
STOP_GRACE_S = 5.0


def _worker_main(conn: Connection, factory: Callable[[], Env]) -> None:
    # Ctrl-C goes to the whole process group: the trainer handles it and closes the pool
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host = EnvHost(factory)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone
                break
            if message is None:
                break
            for op, slot, arg in message:
                reply = host.handle(op, slot, arg)
                try:
                    conn.send(reply)
                except Exception as err:  # an env put something unpicklable in its result
                    conn.send(("error", f"env_error: unpicklable result: {err}"[:240], None))
    finally:
        host.handle("release", -1, None)


class ProcessPool(WorkerPool):
    backend = "process"

    def __init__(self, factory: Callable[[], Env], num_workers: int, timeout_s: float) -> None:
        self._ctx = mp.get_context("spawn")
        self._procs: list[Any] = [None] * max(num_workers, 0)
        self._conns: list[Connection | None] = [None] * max(num_workers, 0)
        super().__init__(factory, num_workers, timeout_s)

    def _start_worker(self, w: int) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.factory),
            name=f"spear-env-worker-{w}",
            daemon=True,  # never outlives a trainer that exits without closing the pool
        )
        proc.start()
        child.close()
        self._procs[w], self._conns[w] = proc, parent

    def _send(self, w: int, jobs: list[Job]) -> None:
        conn = self._conns[w]
        assert conn is not None
        # a dead worker's pipe may refuse the message; the sentinel reports the death next poll
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send([(j.op, j.slot, j.arg) for j in jobs])

    def _poll(self, busy: list[int], timeout: float | None) -> list[tuple[int, Reply | None, str]]:
        handles: list[Any] = [self._conns[w] for w in busy] + [
            self._procs[w].sentinel for w in busy
        ]
        wait(handles, timeout)
        out: list[tuple[int, Reply | None, str]] = []
        for w in busy:
            conn, proc = self._conns[w], self._procs[w]
            broken = False
            try:
                while conn.poll():
                    out.append((w, conn.recv(), ""))
            except (EOFError, OSError):
                broken = True
            if broken or not proc.is_alive():
                proc.join(STOP_GRACE_S)
                out.append((w, None, _exit_detail(proc.exitcode)))
        return out

    def _is_dead(self, w: int) -> bool:
        return not self._procs[w].is_alive()

    def _stop_worker(self, w: int, kill: bool) -> None:
        proc, conn = self._procs[w], self._conns[w]
        if proc is None:
            return
        if not kill and proc.is_alive():
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(STOP_GRACE_S)
        if proc.is_alive():
            proc.kill()
        proc.join(STOP_GRACE_S)
        with contextlib.suppress(OSError):
            conn.close()
        proc.close()
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
    factory: Callable[[], Env], *, timeout_s: float, num_workers: int = 0, **_: Any
) -> ProcessPool:
    return ProcessPool(factory, num_workers or default_num_workers(), timeout_s)
