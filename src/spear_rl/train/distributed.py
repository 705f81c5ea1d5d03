"""Data-parallel training on torch.distributed: the distributed context the loop is handed.

One rank-agnostic loop (DESIGN.md): every collective the trainer and the update need is a named
function here (model wrapping: `parallel.py`; checkpoints and resume: `dist_state.py`), and each is
the identity when torch.distributed is not initialised, so a one-process run takes the same code
path with world size 1.

Launch: `torchrun --nproc_per_node N -m spear_rl.cli train ...` (or `spear train` under any
launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT). Backend: NCCL for
CUDA tensors and gloo for CPU tensors (one default group serves both, so small CPU counts and
python objects travel over gloo even on GPUs). docs/distributed.md says what is global and what is
per rank.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from spear_rl.train.threads import cpu_cores

T = TypeVar("T")

# metrics summed over ranks (counts); names ending in these are maxed / minned; the rest averaged
SUM_METRIC_PREFIXES = (
    "batch/",
    "env/",
    "filter/overlong",
    "filter/incomplete",
    "filter/repetitive",
)
SUM_METRICS = frozenset(
    {
        "rollout/episodes",
        "actor/loss",  # each rank's loss is its share of the global loss
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
        "rollout/prefill_tokens",
        "rollout/prefill_tokens_full",
        "rollout/kv_full_prefills",
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


# ---- per-rank seeds, threads and logging ---------------------------------------------------------
def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps `seed` (a one-process run is unchanged); other ranks get their own stream."""
    return seed if rank == 0 else (seed * 1_000_003 + rank * 7_919) % 2**63


def threads_per_rank(configured: int) -> int:
    """CPU threads for this rank: the configured number, or (0) the physical cores this process
    may use (threads.cpu_cores) split over the node's ranks. Two ranks with two threads each on
    two cores ran 40x slower (docs/distributed.md)."""
    if configured > 0:
        return configured
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cpu_cores() // max(1, local_ranks))


class SilentLogger:
    """The metrics logger of ranks other than 0: rank 0 alone writes metrics.jsonl."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass
