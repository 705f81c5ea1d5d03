"""Push the training model's weights into the engine, and check that the engine now is that model.

The check is a log-prob comparison on a probe sequence: the engine's `score` against the training
model's own forward pass. It catches what a name check cannot (a tensor pushed to the wrong place,
a layout the engine rewrote wrongly). Tolerances: fp32 engines agree with the training model to
~1e-5 per token on the CPU; half-precision kernels differ by a few hundredths of a nat, and bf16
more on a fine-tuned model's prompt tokens (SmolLM2-135M after the default's warm start: 0.137 for
the hf engine's bf16 copy, 0.121 for the fp32 model under bf16 autocast, on a 206-token probe). A
missed tied LM head was ~8 nats off.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import torch

from spear_rl.models.forward import token_logprobs
from spear_rl.rollout.engines.base import EngineSyncError, GenerationEngine
from spear_rl.rollout.engines.weights import policy_weights

# Mean |engine - training| log-prob per probe token above which a sync counts as failed.
SYNC_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.3, torch.float16: 0.1}


@torch.no_grad()
def probe_gap(engine: GenerationEngine, model: torch.nn.Module, probe: Sequence[int]) -> float:
    """Mean |log p_engine - log p_model| over the probe's tokens (after the first)."""
    ids = torch.tensor([list(probe)], device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with _root_gathered(model):
            reference, _ = token_logprobs(model, ids, torch.ones_like(ids))
    finally:
        model.train(was_training)
    served = torch.tensor(engine.score(probe), dtype=torch.float32)
    return float((served - reference[0, 1:].float().cpu()).abs().mean())


@contextlib.contextmanager
def _root_gathered(model: torch.nn.Module) -> Iterator[None]:
    """An FSDP2-sharded model's root parameters (embeddings, final norm, head) gathered for the
    probe: `token_logprobs` calls the decoder and head past the root's own forward hooks. Each
    decoder layer gathers its own weights in its forward and frees them after, so the check, like
    the push, never holds the whole model. Every rank runs it (the gathers are collectives)."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the model computes in: its parameters' own, or under FSDP2 with a mixed-precision
    policy (bf16 on CUDA, parallel.wrap_model) the dtype its gathered weights are cast to."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        policy = getattr(model._get_fsdp_state(), "_mp_policy", None)  # torch keeps it private
        if policy is not None and policy.param_dtype is not None:
            return policy.param_dtype
    return next(model.parameters()).dtype


def check_engine_sync(
    engine: GenerationEngine, model: torch.nn.Module, probe: Sequence[int]
) -> float:
    """Raise EngineSyncError unless the engine's log-probs on `probe` match the model's."""
    if len(probe) < 2:
        raise ValueError("the sync probe needs at least two tokens")
    gap = probe_gap(engine, model, probe)
    # the coarser arithmetic of the two sets the tolerance (an fp32 policy, a bf16 engine copy)
    limit = max(SYNC_TOLERANCE.get(d, 0.1) for d in (compute_dtype(model), engine.dtype))
    if not gap <= limit:
        raise EngineSyncError(
            f"the {engine.name} engine disagrees with the training model after a weight sync: "
            f"mean log-prob gap {gap:.3g} > {limit:g} on a {len(probe)}-token probe"
        )
    return gap


def sync_engine(
    engine: GenerationEngine, model: torch.nn.Module, probe: Sequence[int]
) -> dict[str, float]:
    """Push `model`'s weights (LoRA merged) into `engine` and check them; returns metrics.

    The push streams: a model sharded by FSDP2 is gathered one parameter at a time, each handed to
    the engine and dropped, so no rank holds a second full copy of the weights (every rank calls
    this together: the gathers and the probe's forward are collectives)."""
    t0 = time.perf_counter()
    engine.load_weights(policy_weights(model))
    pushed = time.perf_counter()
    gap = check_engine_sync(engine, model, probe)
    return {
        "time/weight_sync": pushed - t0,
        "time/weight_sync_check": time.perf_counter() - pushed,
        "engine/sync_logprob_gap": gap,
    }
