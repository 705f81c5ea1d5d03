"""Truncated importance sampling (TIS) for the generation-engine / trainer mismatch.

With a separate generation engine (vLLM) the tokens are sampled from the engine's distribution
`pi_engine`, while the update's `pi_old` is the training model's recomputation of the same tokens;
kernels and precision make the two differ slightly. TIS reweights each token's policy loss by
`w = min(pi_old / pi_engine, cap)` (detached), so that the gradient estimates the training
model's own on-policy gradient; the cap bounds the variance from tokens the engine found much less
likely than the trainer does. `cap <= 0` turns it off (weights of 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spear_rl.algos.losses import LOG_RATIO_LIMIT


def truncated_is_weights(
    old_logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor, cap: float
) -> Tensor:
    """Per-token `min(exp(old - behaviour), cap)` where mask is set, 1 elsewhere; no gradient."""
    if cap <= 0:
        return torch.ones_like(old_logprobs)
    log_ratio = (
        (old_logprobs - behaviour_logprobs).detach().clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    )
    weights = log_ratio.exp().clamp(max=cap)
    return torch.where(mask.bool(), weights, torch.ones_like(weights))
