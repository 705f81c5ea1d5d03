"""The policy across ranks: DDP or FSDP2 wrapping, one gradient sync per optimiser step, full
weights for generation and for the saved model folder.

Gradient sync (`accumulate_then_sync`): every micro-batch backward runs WITHOUT communication; the
gradients are summed over ranks once per optimiser step by one extra zero-loss pass. Ranks hold
different numbers of samples (episodes have different lengths, filters drop different samples), so
they run different numbers of micro-batches; a sync per micro-batch would need equal counts. The
reduction is a SUM, not DDP's mean: the loss aggregation already divides by global token / sequence
counts (`algos/aggregation.py`), so each rank's loss is its share of the global loss.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from spear_rl.train.distributed import DistContext, is_distributed, world_rank

PARALLEL_MODES = ("ddp", "fsdp")


def wrap_model(model: torch.nn.Module, ctx: DistContext, parallel: str) -> torch.nn.Module:
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


def is_fsdp(model: torch.nn.Module) -> bool:
    """The policy is sharded by FSDP2 (its parameters are DTensors)."""
    return bool(_fsdp_modules(model))


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
        _hold_full(fsdp)
        try:
            yield model
        finally:
            for module in fsdp:
                module.set_requires_gradient_sync(True, recurse=False)
                module.set_reshard_after_backward(True, recurse=False)
    _zero_loss_pass(model, pad_token_id)  # the one syncing backward, equal on every rank
    if not _is_ddp(model):
        _release_full(_fsdp_modules(model))


def _zero_loss_pass(model: torch.nn.Module, pad_token_id: int) -> None:
    """A forward/backward whose loss is 0 * (every parameter's use): it adds nothing to the
    accumulated gradients, but its backward is where DDP / FSDP reduce them over ranks."""
    device = next(model.parameters()).device
    ids = torch.full((1, 1), pad_token_id, dtype=torch.long, device=device)
    logits = model(input_ids=ids).logits
    (logits.float().sum() * 0.0).backward()


@contextlib.contextmanager
def full_weights(model: torch.nn.Module, gather: bool = True) -> Iterator[torch.nn.Module]:
    """The plain model with full weights, for generation, evaluation and per-rank forwards.

    Under FSDP every forward would all-gather its layers, and ranks generate different numbers of
    tokens, so the weights are gathered once here (one collective per module, on every rank) and
    held until exit. DDP and one process: the plain model, nothing gathered. `gather=False`: an
    engine with its own copy of the weights generates (vLLM), so the model stays sharded.
    """
    fsdp = _fsdp_modules(model) if is_distributed() and gather else []
    if not fsdp:
        yield unwrap(model)
        return
    _hold_full(fsdp)
    try:
        yield model
    finally:
        _release_full(fsdp)


def _hold_full(fsdp: list) -> None:
    """Gather each FSDP module's full weights and keep them through later forwards."""
    for module in fsdp:
        module.set_reshard_after_forward(False, recurse=False)
        module.unshard()


def _release_full(fsdp: list) -> None:
    """Back to sharded weights (the undo of `_hold_full`)."""
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


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (ranks may build the start differently:
    rank 0 alone runs the SFT warm start)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


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


def model_to_save(train_model: torch.nn.Module) -> torch.nn.Module | None:
    """The model rank 0 writes to the HF folder (None on the others; every rank calls it)."""
    full = full_state_dict(train_model) if _fsdp_modules(train_model) else None
    return savable_model(train_model, full) if world_rank()[0] == 0 else None
