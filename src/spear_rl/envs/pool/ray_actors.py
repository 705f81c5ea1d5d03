"""`env.workers=ray`: Ray actors, each hosting several envs, on this machine or across a cluster.

With `env.ray_address` empty the pool joins the Ray runtime this process already has, else the
cluster named by the RAY_ADDRESS variable, else starts a local one (and stops it on `close`);
"auto" joins the cluster running on this machine, "ray://host:10001" one elsewhere. Each actor
reserves `env.cpus_per_worker` CPUs, so the scheduler spreads the actors over the cluster's nodes
(which need spear-rl and the env's extras installed). Every job is one actor call; calls to one
actor run in order. A call that fails with a Ray error means the actor is gone (`ray.kill`, a lost
node, an out-of-memory kill): the episode whose call it was ends, the actor is started anew.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import ENV_POOLS
from spear_rl.envs.pool.host import EnvHost, Reply
from spear_rl.envs.pool.workers import Job, WorkerPool

RAY_MISSING = "env.workers=ray needs Ray: pip install 'spear-rl[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as err:
        if err.name != "ray":
            raise
        raise ModuleNotFoundError(RAY_MISSING, name="ray") from None
    return ray


class EnvHostActor:
    """The actor class (wrapped by `ray.remote` at pool start, with the configured CPUs)."""

    def __init__(self, factory: Callable[[], Env]) -> None:
        self.host = EnvHost(factory)

    def handle(self, op: str, slot: int, arg: Any) -> Reply:
        return self.host.handle(op, slot, arg)


class RayPool(WorkerPool):
    backend = "ray"

    def __init__(
        self,
        factory: Callable[[], Env],
        num_workers: int,
        timeout_s: float,
        cpus_per_worker: float = 1.0,
        ray_address: str = "",
    ) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=ray_address or None, include_dashboard=False)
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0.0))
        if num_workers <= 0:
            num_workers = max(1, int(cluster_cpus // cpus_per_worker))
        needed = num_workers * cpus_per_worker
        if needed > cluster_cpus:
            if self._owns_ray:
                ray.shutdown()
            raise ValueError(
                f"env.num_workers={num_workers} x env.cpus_per_worker={cpus_per_worker} needs "
                f"{needed:g} CPUs but the Ray cluster has {cluster_cpus:g}; lower one of them "
                "(fractions of a CPU work) or add nodes"
            )
        self._actor_class = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(EnvHostActor)
        self._actors: list[Any] = [None] * num_workers
        self._refs: list[deque[Any]] = [deque() for _ in range(num_workers)]
        try:
            super().__init__(factory, num_workers, timeout_s)
        except RuntimeError as err:  # most often: actors waiting for CPUs other work holds
            free = float(ray.available_resources().get("CPU", 0.0))
            if self._owns_ray:
                ray.shutdown()
            raise RuntimeError(
                f"{err} (Ray has {free:g} of {cluster_cpus:g} CPUs free; each env worker asks for "
                f"env.cpus_per_worker={cpus_per_worker:g})"
            ) from None
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise

    def _start_worker(self, w: int) -> None:
        self._actors[w] = self._actor_class.remote(self.factory)
        self._refs[w] = deque()

    def _send(self, w: int, jobs: list[Job]) -> None:
        actor = self._actors[w]
        self._refs[w].extend(actor.handle.remote(j.op, j.slot, j.arg) for j in jobs)

    def _poll(self, busy: list[int], timeout: float | None) -> list[tuple[int, Reply | None, str]]:
        ray = self._ray
        heads = {self._refs[w][0]: w for w in busy if self._refs[w]}
        ready, _ = ray.wait(list(heads), num_returns=1, timeout=timeout)
        if ready:  # take every head that is done, not just the first
            ready, _ = ray.wait(list(heads), num_returns=len(heads), timeout=0)
        out: list[tuple[int, Reply | None, str]] = []
        for ref in ready:
            w = heads[ref]
            self._refs[w].popleft()
            try:
                out.append((w, ray.get(ref), ""))
            except ray.exceptions.RayError as err:
                detail = " ".join(str(err).split())[:160]
                out.append((w, None, f"the Ray actor is gone ({type(err).__name__}: {detail})"))
        return out

    def _stop_worker(self, w: int, kill: bool) -> None:
        actor = self._actors[w]
        if actor is not None:
            # a graceful stop has nothing to wait for: release() already closed the envs
            self._ray.kill(actor, no_restart=True)
        self._actors[w] = None
        self._refs[w] = deque()

    def actors(self) -> list[Any]:
        """The actor handles (tests kill one with `ray.kill`)."""
        return list(self._actors)

    def close(self) -> None:
        if not self._ray.is_initialized():  # the runtime, and every actor with it, is gone
            self._closed = True
            return
        try:
            super().close()
        finally:
            if self._owns_ray and self._ray.is_initialized():
                self._ray.shutdown()


@ENV_POOLS.register("ray")
def make_ray_pool(
    factory: Callable[[], Env],
    *,
    timeout_s: float,
    num_workers: int,
    cpus_per_worker: float,
    ray_address: str,
    **_: Any,
) -> RayPool:
    return RayPool(factory, num_workers, timeout_s, cpus_per_worker, ray_address)
