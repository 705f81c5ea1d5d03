"""What the process and Ray pools share: slots spread over workers, deadlines, and fault recovery.

Slot i lives on worker `i % num_workers`. A round (`reset`, `step`, `release`) sends each worker
its jobs in one message; a worker answers them one by one, in order, so the job at the head of a
worker's queue is the one running, since the previous answer (or the send). Then:
- an env that raises answers an error: that episode ends (`env_error: ...`), the worker stays;
- a head job running longer than its timeout: the worker is killed and started anew, and the
  episode ends `env_timeout`;
- a worker that dies (killed process, lost Ray actor): the episode whose job was running ends
  `env_worker_died: ...`, and the worker is started anew.
Either way the other episodes that lived on that worker are rebuilt on the new one by replaying
their seed and accepted responses (envs are deterministic in them); the rebuilt env must show the
same view as before, else that episode ends `env_worker_lost: ...`. So a fault costs one episode,
never the batch, and never the run.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import EnvCallResult, EnvPool, EnvView
from spear_rl.envs.pool.host import PING, RELEASE, REPLAY, RESET, STEP, Reply

# Seconds a new worker may take to answer its first ping (imports, Ray actor placement).
STARTUP_TIMEOUT_S = 120.0


@dataclass
class Job:
    op: str
    slot: int
    arg: Any
    timeout_s: float  # <= 0: no deadline
    index: int | None = None  # position in the round's results; None for the pool's own jobs


class WorkerPool(EnvPool):
    """The backend-independent part of the process and Ray pools (see the module docstring)."""

    def __init__(self, factory: Callable[[], Env], num_workers: int, timeout_s: float) -> None:
        super().__init__()
        if num_workers < 1:
            raise ValueError(f"env.num_workers must be >= 1 here, got {num_workers}")
        self.factory = factory
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self._logs: dict[int, tuple[int, list[str]]] = {}  # live slot -> (seed, accepted responses)
        self._views: dict[int, EnvView] = {}  # live slot -> its view after the last call
        self._lost: dict[int, str] = {}  # slot -> why its rebuild failed
        self._queues: list[deque[Job]] = [deque() for _ in range(num_workers)]
        self._since = [0.0] * num_workers  # when the head job of each worker started
        self._closed = False
        for w in range(num_workers):
            self._start_worker(w)
        self._check_started()

    # ---- backend hooks --------------------------------------------------------------------------
    @abstractmethod
    def _start_worker(self, w: int) -> None: ...

    @abstractmethod
    def _send(self, w: int, jobs: list[Job]) -> None:
        """Hand jobs to an idle worker, to run in order."""

    @abstractmethod
    def _poll(self, busy: list[int], timeout: float | None) -> list[tuple[int, Reply | None, str]]:
        """Wait up to `timeout` seconds for answers from busy workers: (worker, reply, "") per
        answer in each worker's order, and (worker, None, detail) when that worker is dead."""

    @abstractmethod
    def _stop_worker(self, w: int, kill: bool) -> None: ...

    def _is_dead(self, w: int) -> bool:
        """Known dead while idle (a process backend can tell; Ray finds out on the next call)."""
        return False

    # ---- the pool protocol ---------------------------------------------------------------------
    def worker_of(self, slot: int) -> int:
        return slot % self.num_workers

    def reset(self, seeds: Sequence[int]) -> list[EnvCallResult]:
        self.release()
        t = self.timeout_s
        return self._run([Job(RESET, i, int(s), t, i) for i, s in enumerate(seeds)])

    def step(self, slots: Sequence[int], responses: Sequence[str]) -> list[EnvCallResult]:
        t = self.timeout_s
        jobs = [
            Job(STEP, s, r, t, i) for i, (s, r) in enumerate(zip(slots, responses, strict=True))
        ]
        return self._run(jobs)

    def release(self) -> None:
        self._logs, self._views, self._lost = {}, {}, {}
        self._run([Job(RELEASE, -w - 1, None, self.timeout_s) for w in range(self.num_workers)])

    def worker_pids(self) -> list[int]:
        """The process id of every worker (tests check none is left after `close`)."""
        pids: list[int] = [0] * self.num_workers
        jobs = [Job(PING, -w - 1, None, STARTUP_TIMEOUT_S, w) for w in range(self.num_workers)]
        for w, result in enumerate(self._run(jobs)):
            if not result.ok or result.result is None:
                raise RuntimeError(f"env worker {w} did not answer: {result.failure}")
            pids[w] = int(result.result)
        return pids

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not any(self._queues):  # else a round was interrupted: just stop the workers
                self.release()
        finally:
            self._closed = True
            for w in range(self.num_workers):
                self._stop_worker(w, kill=False)

    # ---- one round --------------------------------------------------------------------------------
    def _run(self, jobs: list[Job]) -> list[EnvCallResult]:
        if self._closed:
            raise RuntimeError("the env pool is closed")
        results: list[EnvCallResult] = [EnvCallResult(failure="not run")] * sum(
            j.index is not None for j in jobs
        )
        outgoing: list[list[Job]] = [[] for _ in range(self.num_workers)]
        for w in range(self.num_workers):
            # a round cut short (Ctrl-C) left answers that would be taken for this round's: the
            # worker starts afresh; so does one that died between rounds (nobody's call was running)
            if self._queues[w] or self._is_dead(w):
                self._queues[w].clear()
                self._replace(w)
                outgoing[w].extend(self._rebuild_jobs(w))
        for job in jobs:
            if job.slot in self._lost:
                results[job.index] = self._fail(job, self._lost[job.slot])
            else:
                outgoing[self.worker_of(job.slot) if job.slot >= 0 else -job.slot - 1].append(job)
        for w, batch in enumerate(outgoing):
            if batch:
                self._submit(w, batch)
        while any(self._queues):
            busy = [w for w in range(self.num_workers) if self._queues[w]]
            for w, reply, detail in self._poll(busy, self._wait_time(busy)):
                if reply is None:
                    self._fault(w, f"env_worker_died: {detail}", results)
                    continue
                job = self._queues[w].popleft()
                self._since[w] = time.monotonic()
                self._complete(job, reply, results)
            now = time.monotonic()
            for w in busy:
                queue = self._queues[w]
                if queue and 0 < queue[0].timeout_s < now - self._since[w]:
                    self._fault(w, "env_timeout", results)
        return results

    def _wait_time(self, busy: list[int]) -> float | None:
        limits = [
            self._since[w] + self._queues[w][0].timeout_s
            for w in busy
            if self._queues[w][0].timeout_s > 0
        ]
        return max(0.0, min(limits) - time.monotonic()) if limits else None

    def _submit(self, w: int, jobs: list[Job]) -> None:
        # one send per idle worker: a second send while it answers could fill both pipes
        assert not self._queues[w], "jobs are only sent to an idle worker"
        self._queues[w].extend(jobs)
        self._since[w] = time.monotonic()
        self._send(w, jobs)

    def _complete(self, job: Job, reply: Reply, results: list[EnvCallResult]) -> None:
        status, payload, extra = reply
        if job.op == REPLAY:
            if status != "ok" or extra != self._views.get(job.slot):
                why = payload if status != "ok" else "the replayed episode diverged"
                self._lose(job.slot, f"env_worker_lost: rebuilding after a worker fault: {why}")
            return
        if job.index is None:
            return
        if job.slot in self._lost:  # answered by an env whose rebuild failed
            results[job.index] = self._fail(job, self._lost[job.slot])
            return
        if job.op == PING:
            results[job.index] = (
                EnvCallResult(result=payload)
                if status == "ok"
                else EnvCallResult(failure=str(payload))
            )
            return
        if status != "ok":
            results[job.index] = self._fail(job, str(payload), extra)
            return
        if job.op == RESET:
            self._logs[job.slot] = (int(job.arg), [])
        else:
            self._logs[job.slot][1].append(job.arg)
        self._views[job.slot] = extra
        results[job.index] = EnvCallResult(view=extra, result=payload)

    def _fail(self, job: Job, reason: str, error: BaseException | None = None) -> EnvCallResult:
        """An episode's call failed: the episode is over (its env is not rebuilt after a fault)."""
        self._logs.pop(job.slot, None)
        self._views.pop(job.slot, None)
        self.counters["worker_failures"] += 1
        return EnvCallResult(failure=reason, error=error)

    def _lose(self, slot: int, reason: str) -> None:
        self._logs.pop(slot, None)
        self._views.pop(slot, None)
        self._lost[slot] = reason

    def _fault(self, w: int, reason: str, results: list[EnvCallResult]) -> None:
        """Worker w hung or died: fail its running job, start it anew, rebuild, resend the rest."""
        queue = self._queues[w]
        head = queue.popleft() if queue else None
        rest = [j for j in queue if j.op != REPLAY]  # rebuilds are recomputed below
        queue.clear()
        if head is not None:
            if head.op == REPLAY:
                self._lose(head.slot, f"env_worker_lost: rebuilding after a worker fault: {reason}")
            elif head.index is not None and head.op != PING:
                results[head.index] = self._fail(head, reason)
            elif head.index is not None:
                results[head.index] = EnvCallResult(failure=reason)
        self._replace(w)
        batch = self._rebuild_jobs(w) + rest
        for job in rest:
            if job.slot in self._lost:  # its rebuild failed earlier in this round
                batch.remove(job)
                results[job.index] = self._fail(job, self._lost[job.slot])
        if batch:
            self._submit(w, batch)

    def _replace(self, w: int) -> None:
        self._stop_worker(w, kill=True)
        self._start_worker(w)
        self.counters["workers_replaced"] += 1

    def _rebuild_jobs(self, w: int) -> list[Job]:
        jobs = []
        for slot, (seed, responses) in sorted(self._logs.items()):
            if self.worker_of(slot) == w:
                limit = self.timeout_s * (1 + len(responses)) if self.timeout_s > 0 else 0.0
                jobs.append(Job(REPLAY, slot, (seed, list(responses)), limit))
        return jobs

    def _check_started(self) -> None:
        jobs = [Job(PING, -w - 1, None, STARTUP_TIMEOUT_S, w) for w in range(self.num_workers)]
        failed = [r.failure for r in self._run(jobs) if not r.ok]
        self.counters["workers_replaced"] = 0
        if failed:
            self.close()
            raise RuntimeError(f"{len(failed)} env worker(s) did not start: {failed[0]}")
