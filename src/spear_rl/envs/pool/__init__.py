"""Env pools: the batch of live episodes behind the rollout, stepped inline, in worker processes or
in Ray actors (`env.workers`). See base.py for the protocol and workers.py for fault recovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import (
    ENV_POOLS,
    EnvCallResult,
    EnvPool,
    EnvSpec,
    EnvView,
    InlinePool,
)
from spear_rl.envs.pool.process import ProcessPool
from spear_rl.envs.pool.ray_actors import RayPool


@ENV_POOLS.register("inline")
def make_inline_pool(factory: Callable[[], Env], *, timeout_s: float, **_: Any) -> InlinePool:
    return InlinePool(factory, timeout_s)


def make_env_pool(
    workers: str,
    factory: Callable[[], Env],
    *,
    timeout_s: float,
    num_workers: int,
    cpus_per_worker: float,
    ray_address: str,
) -> EnvPool:
    """The pool of backend `workers` ("inline", "process", "ray"); `factory` must be picklable for
    the worker backends (an `EnvSpec` is). `num_workers=0`: one per CPU (of the Ray cluster)."""
    return ENV_POOLS.get(workers)(
        factory,
        timeout_s=timeout_s,
        num_workers=num_workers,
        cpus_per_worker=cpus_per_worker,
        ray_address=ray_address,
    )


__all__ = [
    "ENV_POOLS",
    "EnvCallResult",
    "EnvPool",
    "EnvSpec",
    "EnvView",
    "InlinePool",
    "ProcessPool",
    "RayPool",
    "make_env_pool",
]
