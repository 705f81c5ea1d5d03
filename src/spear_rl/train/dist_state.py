"""Checkpoints and resume across ranks: what each rank hands in, what it takes back.

A checkpoint of N ranks is one state.pt written by rank 0: the full optimiser state (gathered from
FSDP shards with torch.distributed.checkpoint's state-dict API), the scheduler, and each rank's own
state (replay shard, RNG streams) under `ranks`; `world_size` is checked on resume. A one-process
checkpoint is what it always was.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

from spear_rl.train.distributed import (
    DistContext,
    all_gather_objects,
    broadcast_object,
    check_divisible,
    is_distributed,
    rank_device,
    threads_per_rank,
    world_rank,
)

T = TypeVar("T")


def replay_shard_config(cfg: T, world_size: int) -> T:
    """This rank's replay buffer settings: the capacity split evenly over ranks. The per-draw
    count is the update's business (it asks each rank for its share of the global draw)."""
    if world_size <= 1:
        return cfg
    size = max(1, -(-cfg.buffer_size // world_size))  # ceil: the shards hold at least the total
    return dataclasses.replace(cfg, buffer_size=size, replay_batch=0)


def gather_checkpoint_state(
    train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank_state: dict[str, Any]
) -> dict[str, Any] | None:
    """What a checkpoint needs from every rank, on rank 0 (None on the others); every rank calls it.

    `optimizer`: the full optimiser state (gathered from FSDP shards with torch.distributed.
    checkpoint's state-dict API; identical on DDP ranks); `ranks`: each rank's own `rank_state`
    (replay shard, RNG states) in rank order; `world_size`, checked on resume."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    optim = get_optimizer_state_dict(
        train_model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    ranks = all_gather_objects(rank_state)
    if world_rank()[0] != 0:
        return None
    return {"optimizer": optim, "ranks": ranks, "world_size": len(ranks)}


def restore_optimizer(
    train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a checkpoint's optimiser state written by one process or by `gather_checkpoint_state`."""
    if not is_distributed():
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    set_optimizer_state_dict(
        train_model, optimizer, state, options=StateDictOptions(full_state_dict=True)
    )


def my_rank_state(state: dict[str, Any], ctx: DistContext) -> dict[str, Any]:
    """This rank's part of a checkpoint's state; a different world size is a clear error."""
    check_world_size(state, ctx)
    return state["ranks"][ctx.rank] if "ranks" in state else state


def check_world_size(state: dict[str, Any], ctx: DistContext) -> None:
    """A checkpoint resumes on the world size that wrote it (one line saying so otherwise)."""
    from spear_rl.train.checkpoint import RunFolderError

    saved = int(state.get("world_size", 1))
    if saved != ctx.world_size:
        raise RunFolderError(
            f"this checkpoint was written by {saved} rank(s) and this run has {ctx.world_size}: "
            f"resume with the same number of processes (torchrun --nproc_per_node {saved} ...); "
            "the replay buffer and RNG streams are per rank"
        )


def share_run_start(start: Any, ctx: DistContext) -> Any:
    """Rank 0's `RunStart` (run_dir.start_run: the checks, the folder) on every rank; each rank
    then loads its own copy of the checkpoint state and takes its own device and threads."""
    if ctx.world_size <= 1:
        if start.state is not None:
            check_world_size(start.state, ctx)
        return start
    from spear_rl.train.checkpoint import load_state

    shared = broadcast_object(dataclasses.replace(start, state=None) if ctx.is_main else None)
    if ctx.is_main and start.state is not None:
        check_world_size(start.state, ctx)
    check_divisible("train.batch_tasks", shared.cfg.train.batch_tasks, ctx.world_size)
    if shared.cfg.train.parallel == "fsdp" and shared.cfg.rollout.engine != "hf":
        from spear_rl.fields import ConfigError

        # the engine sync pushes the policy's own parameters, which FSDP holds as shards
        raise ConfigError(
            f"rollout.engine={shared.cfg.rollout.engine} with train.parallel=fsdp is not "
            "supported yet: use train.parallel=ddp (each rank's engine gets its full weights)"
        )
    torch.set_num_threads(threads_per_rank(shared.cfg.train.threads))
    if ctx.is_main:
        state = start.state
    else:
        state = load_state(shared.checkpoint) if shared.checkpoint is not None else None
    return dataclasses.replace(
        shared,
        state=state,
        created=shared.created and ctx.is_main,
        device=rank_device(ctx, shared.device),
    )


def checkpoint_payload(
    train_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank_state: dict[str, Any],
    shared: dict[str, Any],
) -> dict[str, Any] | None:
    """The state.pt content (rank 0; None on the others; every rank calls it). One process: the
    optimiser state, `rank_state` and `shared` as before. Several: the gathered optimiser state,
    every rank's `rank_state` under `ranks`, rank 0's also at the top level."""
    if world_rank()[1] <= 1:
        return {"optimizer": optimizer.state_dict(), **rank_state, **shared}
    gathered = gather_checkpoint_state(train_model, optimizer, rank_state)
    return None if gathered is None else {**gathered, **rank_state, **shared}
