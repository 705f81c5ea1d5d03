"""Checkpoints and resume across ranks: what each rank hands in, what it takes back.

A checkpoint of N ranks is one state.pt written by rank 0: the scheduler, each rank's own state
(replay shard, RNG streams) under `ranks`, `world_size` (checked on resume), and the optimiser
state, which depends on the wrapping:
- DDP (and one process): the optimiser state itself (every DDP rank holds the same one);
- FSDP: a reference to `optimizer/`, a torch.distributed.checkpoint (DCP) folder in which every
  rank wrote its own shard of the optimiser state (`__R_0.distcp`, plus DCP's `.metadata`); no
  rank ever gathers the whole state. The shards are written into a staging folder first and moved
  into the checkpoint before its state.pt, so a checkpoint is complete or absent, as before.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, TypeVar

import torch

from spear_rl.train.distributed import (
    DistContext,
    all_gather_objects,
    barrier,
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

    `optimizer`: DDP's optimiser state (the same on every rank; keyed by parameter name, through
    torch.distributed.checkpoint's state-dict API), or for FSDP the reference to the sharded
    folder `save_sharded_optimizer` wrote; `ranks`: each rank's own `rank_state` (replay shard,
    RNG states) in rank order; `world_size`, checked on resume."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    if shards_optimizer(train_model):
        optim = dict(SHARDED_OPTIMIZER)
    else:
        optim = get_optimizer_state_dict(
            train_model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    ranks = all_gather_objects(rank_state)
    if world_rank()[0] != 0:
        return None
    return {"optimizer": optim, "ranks": ranks, "world_size": len(ranks)}


# ---- the optimiser state of an FSDP run: one DCP shard per rank --------------------------------------
OPTIMIZER_DIR = "optimizer"
# what state.pt holds instead of the optimiser state; checkpoint.load_state adds the folder's path
SHARDED_OPTIMIZER = {"format": "torch.distributed.checkpoint", "dir": OPTIMIZER_DIR}


def shards_optimizer(train_model: torch.nn.Module) -> bool:
    """FSDP on several ranks: each rank holds (and checkpoints) its shard of the optimiser state."""
    from spear_rl.train.parallel import is_fsdp

    return is_distributed() and is_fsdp(train_model)


def is_sharded_reference(optim_state: Any) -> bool:
    return (
        isinstance(optim_state, dict) and optim_state.get("format") == SHARDED_OPTIMIZER["format"]
    )


def staging_dir(run_dir: Path, step: int) -> Path:
    """Where the ranks write step `step`'s optimiser shards before rank 0 moves them into the
    checkpoint (checkpoint.save_checkpoint's `move_in`); next to its `.tmp_step_N`."""
    return Path(run_dir) / "checkpoints" / f".tmp_optimizer_step_{step:06d}"


def save_sharded_optimizer(
    train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path
) -> None:
    """Every rank writes its shard of the optimiser state into `folder` with DCP (a collective).

    Staging folders a crash left behind are removed first (by rank 0, before anyone writes)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if world_rank()[0] == 0:
        for stale in folder.parent.glob(".tmp_optimizer_step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder.mkdir(parents=True)
    barrier()
    # sharded by default: each rank's DTensors hold its own slice, nothing is gathered
    state = get_optimizer_state_dict(train_model, optimizer)
    dcp.save({"optimizer": state}, checkpoint_id=str(folder))


def load_sharded_optimizer(
    train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path
) -> None:
    """Every rank reads its shard of the optimiser state from `folder` (a collective). The
    template's sharding decides what each rank reads: DCP could reshard for another world size,
    but the checkpoint's world size is checked before this (replay and RNG are per rank)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    # the template: this optimiser's state layout (a fresh AdamW gets zero states, initialised by
    # a step with zero gradients and lr 0, which leaves the parameters as they are; DCP skips
    # that step, leaving an empty template, where gradients exist: none survive a load)
    optimizer.zero_grad(set_to_none=True)
    state = get_optimizer_state_dict(train_model, optimizer)
    box = {"optimizer": state}
    dcp.load(box, checkpoint_id=str(folder))
    set_optimizer_state_dict(train_model, optimizer, box["optimizer"])


def restore_optimizer(
    train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a checkpoint's optimiser state: the state itself (one process; DDP, and an FSDP
    checkpoint written before the state was sharded, keyed by parameter name) or the reference
    to DCP shards."""
    if is_sharded_reference(state):
        load_sharded_optimizer(train_model, optimizer, Path(state["path"]))
        return
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
    cfg = shared.cfg
    if cfg.train.parallel == "fsdp" and cfg.rollout.engine != "hf" and cfg.model.lora_rank > 0:
        from spear_rl.fields import ConfigError

        # the push gathers plain parameters one by one; a LoRA merge needs base and adapters at once
        raise ConfigError(
            f"rollout.engine={cfg.rollout.engine} with train.parallel=fsdp and model.lora_rank > 0 "
            "is not supported: use train.parallel=ddp (each rank's engine gets merged weights)"
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
    optimiser state, `rank_state` and `shared` as before. Several: the optimiser state (DDP) or
    the reference to its shards (FSDP), every rank's `rank_state` under `ranks`, rank 0's also at
    the top level."""
    if world_rank()[1] <= 1:
        return {"optimizer": optimizer.state_dict(), **rank_state, **shared}
    gathered = gather_checkpoint_state(train_model, optimizer, rank_state)
    return None if gathered is None else {**gathered, **rank_state, **shared}


def write_checkpoint(
    run_dir: Path,
    step: int,
    train_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tokenizer,
    rank_state: dict[str, Any],
    shared: dict[str, Any],
) -> None:
    """Checkpoint step `step`; every rank calls it. Under FSDP every rank first writes its
    optimiser shard (staged); then rank 0 writes the model folder (from the gathered weights)
    and state.pt, moving the shards in before state.pt (checkpoint.save_checkpoint)."""
    from spear_rl.train.checkpoint import save_checkpoint
    from spear_rl.train.parallel import model_to_save

    move_in = {}
    if shards_optimizer(train_model):
        staged = staging_dir(run_dir, step)
        save_sharded_optimizer(train_model, optimizer, staged)
        move_in[OPTIMIZER_DIR] = staged
    payload = checkpoint_payload(train_model, optimizer, rank_state, shared)
    to_save = model_to_save(train_model)
    if world_rank()[0] == 0:
        save_checkpoint(run_dir, step, to_save, tokenizer, payload, move_in=move_in)
    barrier()
