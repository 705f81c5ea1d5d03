"""Which environment family a run trains on: the `env` section of the run config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spear_rl.envs.pool import ENV_POOLS
from spear_rl.fields import Settings, setting


@dataclass
class EnvConfig(Settings):
    """The environment family, its constructor arguments, and where its envs run."""

    section = "env"

    name: str = setting(
        "sokoban",
        "env family: sokoban, alfworld, webshop, webshop_http, math_tool, the name an installed "
        "package registers (entry point group spear_rl.envs), or an import path package.module:Class",
    )
    kwargs: dict[str, Any] = setting(
        {}, "passed to the env class; --env.kwargs.K=V sets one (a new env.name starts afresh)"
    )
    workers: str = setting(
        "inline",
        "where envs run: inline (in the trainer, one after another), process (worker processes on "
        "this machine), ray (Ray actors, here or on a cluster; pip install 'spear-rl[ray]'); a "
        "worker that hangs past rollout.env_timeout_s or dies costs one episode and is replaced",
        choices=ENV_POOLS,
    )
    num_workers: int = setting(
        0,
        "process / ray: env workers, each hosting several envs; 0 = one per CPU core (ray: the "
        "cluster's CPUs / cpus_per_worker)",
        ge=0,
    )
    cpus_per_worker: float = setting(
        1.0,
        "ray: CPUs each env actor reserves (fractions work): how actors spread over nodes",
        gt=0,
    )
    ray_address: str = setting(
        "",
        "ray: the cluster to join: empty = RAY_ADDRESS, else a new local Ray; auto = the one "
        "running on this machine; ray://HOST:10001 = a remote one",
    )
