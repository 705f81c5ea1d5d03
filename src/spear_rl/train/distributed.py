"""Data-parallel training on torch.distributed: the distributed context the loop is handed.

One rank-agnostic loop (DESIGN.md): every collective the trainer and the update need is a named
function here, and each is the identity when torch.distributed is not initialised, so a one-process
run takes the same code path with world size 1.

Launch: `torchrun --nproc_per_node N -m spear_rl.cli train ...` (or `spear train` under any
launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT). Backend: NCCL for
CUDA tensors and gloo for CPU tensors (one default group serves both, so small CPU counts and
python objects travel over gloo even on GPUs).

Gradient sync (`accumulate_then_sync`): the model is wrapped with DDP or FSDP2 `fully_shard`, but
every micro-batch backward runs WITHOUT communication; the gradients are summed over ranks once per
optimiser step by one extra zero-loss pass. Ranks hold different numbers of samples (episodes have
different lengths, filters drop different samples), so they run different numbers of micro-batches;
a sync per micro-batch would need equal counts. The reduction is a SUM, not DDP's mean: the loss
aggregation already divides by global token / sequence counts (`algos/aggregation.py`), so each
rank's loss is its share of the global loss.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

PARALLEL_MODES = ("ddp", "fsdp")
# metrics summed over ranks (counts); names ending in these are maxed / minned; the rest averaged
SUM_METRIC_PREFIXES = ("batch/", "filter/overlong", "filter/incomplete", "filter/repetitive")
SUM_METRICS = frozenset(
    {
        "rollout/episodes",
        "filter/unreadable",
        "filter/kept_negative",
        "replay/size",
        "replay/admitted",
        "replay/evicted",
        "replay/replayed",
        "replay/last_admitted",
        "replay/last_evicted",
        "replay/last_capacity_evicted",
        "replay/last_drawn",
        "replay/last_qualifying",
        "actor/selected_tokens",
        "actor/valid_tokens",
        "replay/selected_tokens",
        "replay/valid_tokens",
    }
)
MAX_METRIC_SUFFIXES = ("/max", "_max", "max_age", "time/step")
MIN_METRIC_SUFFIXES = ("/min", "_min")
# torch's default is 30 minutes; a rank evaluating or checkpointing while others wait is normal
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among `world_size` data-parallel ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, logs and the model folder."""
        return self.rank == 0


def launcher_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) without one."""
    try:
        return (
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as err:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {err}") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group the launcher set up (torchrun), or return the one-process context.
    Called again, it returns the context of the group already joined."""
    rank, world_size, local_rank = launcher_env()
    if world_size <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={world_size} but {', '.join(missing)} unset: launch with torchrun "
                "(see docs/distributed.md)"
            )
        dist.init_process_group(
            backend="cpu:gloo,cuda:nccl" if cuda else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=COLLECTIVE_TIMEOUT,
        )
    return DistContext(rank, world_size, local_rank)


def shutdown_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_device(ctx: DistContext, device: torch.device) -> torch.device:
    """Each rank on a node uses its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and ctx.world_size > 1:
        return torch.device("cuda", ctx.local_rank)
    return device


def world_rank() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


# ---- which work is mine --------------------------------------------------------------------------
def check_divisible(name: str, value: int, world_size: int) -> None:
    """Global batch sizes split evenly over ranks, or the run stops here with what to change."""
    if world_size > 1 and value % world_size:
        from spear_rl.fields import ConfigError

        raise ConfigError(
            f"{name}={value} does not divide by the world size {world_size}: "
            f"use a multiple of {world_size} (it is the global batch, split over ranks)"
        )


def share_bounds(count: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous share of `count` items (sizes differ by at most one)."""
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def my_share(items: Sequence[T], ctx: DistContext | None = None) -> list[T]:
    """This rank's contiguous share of `items`: whole groups stay together when items are tasks."""
    rank, world_size = (ctx.rank, ctx.world_size) if ctx else world_rank()
    start, end = share_bounds(len(items), world_size, rank)
    return list(items[start:end])


def my_count(total: int) -> int:
    """How many of `total` items (e.g. a global replay draw) this rank takes."""
    rank, world_size = world_rank()
    start, end = share_bounds(total, world_size, rank)
    return end - start


@dataclass(frozen=True)
class GlobalLayout:
    """Where this rank's `count` local items sit in the rank-ordered concatenation of all ranks'."""

    offset: int
    count: int
    total: int

    def local(self, global_indices: Sequence[int]) -> list[int]:
        """The local positions of the global indices this rank holds, in the given order."""
        return [i - self.offset for i in global_indices if 0 <= i - self.offset < self.count]


def global_layout(count: int) -> GlobalLayout:
    counts = all_gather_objects(count)
    rank, _ = world_rank()
    return GlobalLayout(offset=sum(counts[:rank]), count=count, total=sum(counts))


def shared_permutation(count: int, generator: torch.Generator) -> list[int]:
    """A random order of range(count), drawn on rank 0 and the same on every rank (the other
    ranks' generators may have drifted: clip_cov draws from them per rank)."""
    order = torch.randperm(count, generator=generator).tolist() if world_rank()[0] == 0 else None
    return broadcast_object(order)


# ---- collectives (identity with one process) -----------------------------------------------------
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def global_sum(value: float) -> float:
    """Sum of a python number over ranks."""
    if not is_distributed():
        return value
    return float(all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))[0])


def global_max(value: float) -> float:
    if not is_distributed():
        return value
    out = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return float(out[0])


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor: `tensor` summed over ranks (the input is left alone)."""
    return all_reduce_sum(tensor.clone())


def concat_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's 1-D `tensor` (equal lengths) concatenated in rank order."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def cov_collectives() -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
    """The (reduce_sum, all_gather) hooks clip_cov / kl_cov select their tokens with
    (`algos/cov_selection.py`): over all ranks' tokens when distributed, else this process's."""
    from spear_rl.algos.cov_selection import local_only

    if not is_distributed():
        return local_only, local_only
    return sum_over_ranks, concat_over_ranks


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's `obj` (picklable), in rank order; `[obj]` with one process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_concat(items: Sequence[T]) -> list[T]:
    """Every rank's list concatenated in rank order (the one-process order when shares are
    contiguous slices of a global list)."""
    return [x for part in all_gather_objects(list(items)) for x in part]


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def check_same_on_all_ranks(what: str, value: str) -> None:
    """Fail on every rank, with one clear line, when ranks disagree (e.g. a tokenizer's vocabulary)."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    digests = all_gather_objects(digest)
    if len(set(digests)) > 1:
        raise RuntimeError(f"ranks disagree on {what}: {digests}")


def reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """One step's metrics over ranks: counts summed, extremes maxed / minned, the rest averaged
    (every rank runs the same number of tasks, so a mean of rank means is the global mean of
    per-task quantities). Keys present on some ranks only are averaged over those that have them."""
    if not is_distributed():
        return metrics
    per_rank = all_gather_objects(
        {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    )
    keys = sorted({k for m in per_rank for k in m})
    out: dict[str, float] = {}
    for key in keys:
        values = [m[key] for m in per_rank if key in m]
        if key in SUM_METRICS or key.startswith(SUM_METRIC_PREFIXES):
            out[key] = sum(values)
        elif key.endswith(MAX_METRIC_SUFFIXES):
            out[key] = max(values)
        elif key.endswith(MIN_METRIC_SUFFIXES):
            out[key] = min(values)
        else:
            out[key] = sum(values) / len(values)
    return out


# ---- the model -----------------------------------------------------------------------------------
def broadcast_parameters(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (ranks may build the start differently:
    rank 0 alone runs the SFT warm start)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def wrap_model(model: torch.nn.Module, ctx: DistContext, parallel: str = "ddp") -> torch.nn.Module:
    """The module the update trains through: the model itself (one process), DDP, or FSDP2.

    DDP and FSDP reduce gradients with a SUM (see the module docstring). FSDP shards each decoder
    layer and the root; on CUDA it computes in bf16 and reduces in fp32.
    """
    if ctx.world_size <= 1:
        return model
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"train.parallel={parallel!r}: choose one of {', '.join(PARALLEL_MODES)}")
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        # rotary tables are constants: no buffer broadcast in every forward (the name changed)
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        ddp = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync
        )
        ddp.register_comm_hook(None, _sum_allreduce_hook)
        return ddp
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    device = next(model.parameters()).device
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    for module in _fsdp_modules(model):
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)  # gloo has no PREMUL_SUM
    # FSDP initialises from the first forward through the root; run it now, before anything
    # (generation, the update) gathers single layers
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))
    for module in _fsdp_modules(model):
        module.reshard()  # the root keeps its weights gathered after a forward; the optimiser
        # must be built on the sharded parameters
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside a DDP wrapper (FSDP2 keeps the model's own class)."""
    return getattr(model, "module", model) if _is_ddp(model) else model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks FSDP shards one by one (HF names them in `_no_split_modules`)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"train.parallel=fsdp: no decoder layers found in {type(model).__name__} "
            "(its _no_split_modules is empty); use train.parallel=ddp"
        )
    return layers


def _is_ddp(model: torch.nn.Module) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def _fsdp_modules(model: torch.nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def _sum_allreduce_hook(state, bucket):  # no annotations: DDP checks them, and ours are strings
    """DDP comm hook: SUM the bucket over ranks (DDP's default divides by the world size)."""
    work = dist.all_reduce(bucket.buffer(), op=dist.ReduceOp.SUM, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


@contextlib.contextmanager
def accumulate_then_sync(model: torch.nn.Module, pad_token_id: int) -> Iterator[torch.nn.Module]:
    """Yields the module to run forward/backward passes through; their gradients accumulate
    locally, and on exit they are summed over ranks.

    Every rank must enter and leave once per optimiser step (the exit is one collective),
    whatever number of micro-batches it ran inside. With one process: the model, nothing else.
    DDP: the passes run on the inner model (its hooks stay idle outside a DDP forward), and the
    exit's zero-loss pass through the wrapper all-reduces the accumulated `.grad`s.
    """
    if not is_distributed() or not (_is_ddp(model) or _fsdp_modules(model)):
        yield model
        return
    if _is_ddp(model):
        yield unwrap(model)
    else:
        fsdp = _fsdp_modules(model)
        for module in fsdp:  # hold the full weights: forwards inside then need no collective
            module.set_requires_gradient_sync(False, recurse=False)
            module.set_reshard_after_backward(False, recurse=False)
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()
        try:
            yield model
        finally:
            for module in fsdp:
                module.set_requires_gradient_sync(True, recurse=False)
                module.set_reshard_after_backward(True, recurse=False)
    _zero_loss_pass(model, pad_token_id)  # the one syncing backward, equal on every rank
    if not _is_ddp(model):
        for module in _fsdp_modules(model):
            module.set_reshard_after_forward(True, recurse=False)
            module.reshard()


def _zero_loss_pass(model: torch.nn.Module, pad_token_id: int) -> None:
    """A forward/backward whose loss is 0 * (every parameter's use): it adds nothing to the
    accumulated gradients, but its backward is where DDP / FSDP reduce them over ranks."""
    device = next(model.parameters()).device
    ids = torch.full((1, 1), pad_token_id, dtype=torch.long, device=device)
    logits = model(input_ids=ids).logits
    (logits.float().sum() * 0.0).backward()


@contextlib.contextmanager
def full_weights(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The plain model with full weights, for generation and evaluation.

    Under FSDP every forward would all-gather its layers, and ranks generate different numbers of
    tokens, so the weights are gathered once here (one collective per module, on every rank) and
    held until exit. DDP and one process: the plain model, nothing gathered.
    """
    fsdp = _fsdp_modules(model) if is_distributed() else []
    if not fsdp:
        yield unwrap(model)
        return
    for module in fsdp:
        module.set_reshard_after_forward(False, recurse=False)
        module.unshard()
    try:
        yield model
    finally:
        for module in fsdp:
            module.set_reshard_after_forward(True, recurse=False)
            module.reshard()


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) state dict on CPU on rank 0, None on the others; every rank calls it."""
    if not _fsdp_modules(model) or not is_distributed():
        state = unwrap(model).state_dict()
        return state if world_rank()[0] == 0 else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return state if world_rank()[0] == 0 else None


# ---- per-rank seeds, threads and state -----------------------------------------------------------
def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps `seed` (a one-process run is unchanged); other ranks get their own stream."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 7_919) % 2**63


def threads_per_rank(configured: int) -> int:
    """CPU threads for this rank: the configured number, or (0) the cores split over the node's
    ranks. Two ranks with two threads each on two cores ran 40x slower (docs/distributed.md)."""
    if configured > 0:
        return configured
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, local_ranks))


def replay_shard_config(cfg: T, world_size: int) -> T:
    """This rank's replay buffer settings: the capacity split evenly over ranks. The per-draw
    count is the update's business (it asks each rank for its share of the global draw)."""
    if world_size <= 1:
        return cfg
    import dataclasses

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


def savable_model(model: torch.nn.Module, full_state: dict[str, torch.Tensor] | None):
    """On rank 0, a model `save_pretrained` can write: the plain model (one process, DDP), or for
    FSDP a CPU copy holding the gathered full weights (`full_state`)."""
    plain = unwrap(model)
    if not _fsdp_modules(plain) or full_state is None:
        return plain
    with torch.device("meta"):
        copy = type(plain)(plain.config)
    copy.load_state_dict(full_state, assign=True)
    copy.tie_weights()
    copy.generation_config = plain.generation_config
    return copy


def share_run_start(start: Any, ctx: DistContext) -> Any:
    """Rank 0's `RunStart` (run_dir.start_run: the checks, the folder) on every rank; each rank
    then loads its own copy of the checkpoint state and takes its own device and threads."""
    if ctx.world_size <= 1:
        if start.state is not None:
            check_world_size(start.state, ctx)
        return start
    import dataclasses

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
    if ctx_world_size() <= 1:
        return {"optimizer": optimizer.state_dict(), **rank_state, **shared}
    gathered = gather_checkpoint_state(train_model, optimizer, rank_state)
    return None if gathered is None else {**gathered, **rank_state, **shared}


def model_to_save(train_model: torch.nn.Module) -> torch.nn.Module | None:
    """The model rank 0 writes to the HF folder (None on the others; every rank calls it)."""
    full = full_state_dict(train_model) if _fsdp_modules(train_model) else None
    return savable_model(train_model, full) if world_rank()[0] == 0 else None


def ctx_world_size() -> int:
    return world_rank()[1]


class SilentLogger:
    """The metrics logger of ranks other than 0: rank 0 alone writes metrics.jsonl."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass
