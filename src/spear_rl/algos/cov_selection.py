"""The tokens clip_cov and kl_cov act on, chosen over a whole mini-batch (spec §4).

Both losses pick a budget of `max(1, floor(r * N))` tokens by the covariance
`cov = (A - mean A)(logp - mean logp)`, where the means and N run over the valid tokens of the
WHOLE mini-batch. Computed per micro-batch, the choice would change with how memory forces the
split (a micro-batch of one short reply always gets at least one token), so the trainer selects
once per mini-batch and hands each micro-batch pass its slice of the selection.

The functions here take 1-D tensors of the valid tokens in a fixed order (row-major over the
[B, T] positions), so the choice depends neither on padding widths nor on the split. Everything
that crosses processes goes through two hooks, both defaulting to this process alone:
- `reduce_sum(x)`: elementwise sum over ranks (the token statistics: sums and counts);
- `all_gather(x)`: the concatenation over ranks of equal-length 1-D tensors (each rank's best
  `k` candidate scores, padded with -inf).
A distributed context passes its collectives; every rank must make the same calls.

The pick is "the k largest scores among the eligible tokens" for both losses: kl_cov's score is
the covariance; clip_cov's is a uniform random key per eligible token, so its k largest keys are
a uniformly random k-subset of the eligible tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Collective = Callable[[Tensor], Tensor]


def local_only(x: Tensor) -> Tensor:
    """The one-process collective: the sum / gather over a single rank is the tensor itself."""
    return x


def token_covariance(
    advantages: Tensor, logp: Tensor, reduce_sum: Collective = local_only
) -> tuple[Tensor, int]:
    """Per-token `(A - mean A)(logp - mean logp)` (float64, detached) and N, over all ranks.

    Inputs are 1-D over this rank's valid tokens. Sums are taken in float64 so that the means do
    not depend on the order the tokens are summed in.
    """
    adv, lp = advantages.detach().double(), logp.detach().double()
    stats = torch.stack([adv.sum(), lp.sum(), torch.tensor(float(adv.numel()), dtype=adv.dtype)])
    stats = reduce_sum(stats.to(adv.device))
    count = int(round(float(stats[2])))
    if count == 0:
        return torch.zeros_like(adv), 0
    return (adv - stats[0] / count) * (lp - stats[1] / count), count


def token_budget(ratio: float, num_valid: int) -> int:
    """`max(1, floor(ratio * N))` tokens, or none when there are no valid tokens."""
    return max(1, math.floor(ratio * num_valid)) if num_valid > 0 else 0


def top_k_mask(
    score: Tensor, eligible: Tensor, k: int, all_gather: Collective = local_only
) -> Tensor:
    """1-D bool: the eligible tokens whose score is among the k largest of every rank's eligible.

    Each rank sends its best `k` eligible scores (padded with -inf); the k-th largest of them all
    is the threshold. In one process this is exactly the top k (ties broken by `torch.topk`).
    """
    selected = torch.zeros_like(eligible, dtype=torch.bool)
    if k <= 0:
        return selected
    index = torch.nonzero(eligible, as_tuple=False).flatten()
    local = torch.topk(score[index], min(k, index.numel())) if index.numel() else None
    values = torch.full((k,), -math.inf, dtype=score.dtype, device=score.device)
    if local is not None:
        values[: local.values.numel()] = local.values
    gathered = all_gather(values)
    threshold = torch.topk(gathered, k).values[-1]
    if local is None:
        return selected
    keep = (local.values >= threshold) & (local.values > -math.inf)
    selected[index[local.indices[keep]]] = True
    return selected


def random_keys(count: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """`count` uniform keys on `device`, seeded by ONE draw from `generator` (global RNG if None).

    `generator` advances by the same amount whatever `count` is, so ranks that share an update
    generator (e.g. for a shared shuffle) stay in step although their candidate counts differ.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device))
    private = torch.Generator(device=gen_device).manual_seed(seed)
    keys = torch.rand(count, generator=private, device=gen_device, dtype=torch.float64)
    return keys.to(device)
