"""Reducing [B, T] token losses to a scalar, exactly across micro-batches and ranks (spec §5).

Every mode divides by normalisers of the WHOLE mini-batch (`AggregationNorm`), so each micro-batch's
`aggregate_loss` is its share: summing the shares over micro-batches and ranks gives the unsplit
loss, and accumulated gradients equal the unsplit gradient. Note that DistributedDataParallel
*averages* gradients over ranks; multiply the loss by the world size there to keep the sum exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

AGG_MODES = (
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)


@dataclass
class AggregationNorm:
    num_tokens: float  # sum of mask over the WHOLE mini-batch (all micro-batches, all ranks)
    num_seqs: int  # number of sequences B in the whole mini-batch
    t_norm: float  # fixed normaliser for seq-mean-token-sum-norm (default max response length)


def aggregation_norm(
    masks: Sequence[Tensor],
    t_norm: float,
    process_group: object | None = None,
    masked_rows: int = 0,
) -> AggregationNorm:
    """Normalisers from this rank's micro-batch masks [b_i, T_i], all-reduced over ranks.

    `masked_rows`: sequences of this rank's mini-batch left out of `masks` because their whole
    loss mask is 0 (filtered samples): they add nothing to a loss but still count in B (spec §3.5).
    The all-reduce runs only when torch.distributed is initialised; every rank must call it.
    """
    if masked_rows < 0:
        raise ValueError(f"masked_rows must be >= 0, got {masked_rows}")
    if not t_norm > 0:
        raise ValueError(f"t_norm must be > 0 (e.g. the max response length), got {t_norm}")
    for mask in masks:
        if mask.dim() != 2:
            raise ValueError(f"each mask must be [B, T], got shape {tuple(mask.shape)}")
    device = masks[0].device if masks else torch.device("cpu")
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    counts[1] += masked_rows
    for mask in masks:
        counts[0] += (mask > 0).sum()
        counts[1] += mask.shape[0]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts, op=torch.distributed.ReduceOp.SUM, group=process_group)
    return AggregationNorm(
        num_tokens=float(counts[0]), num_seqs=int(round(float(counts[1]))), t_norm=float(t_norm)
    )


def aggregate_loss(token_loss: Tensor, mask: Tensor, mode: str, norm: AggregationNorm) -> Tensor:
    """This micro-batch's share of the mini-batch loss under `mode` (one of AGG_MODES)."""
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; known: {', '.join(AGG_MODES)}")
    if token_loss.shape != mask.shape or token_loss.dim() != 2:
        raise ValueError(
            f"token_loss and mask must both be [B, T]; got {tuple(token_loss.shape)} "
            f"and {tuple(mask.shape)}"
        )
    valid = mask > 0
    # where() rather than a product: a masked position holding inf/NaN must not leak through.
    masked = torch.where(valid, token_loss, torch.zeros_like(token_loss))
    if mode == "token-mean":
        return masked.sum() / max(norm.num_tokens, 1.0)
    if mode == "seq-mean-token-sum":
        return masked.sum() / max(norm.num_seqs, 1)
    if mode == "seq-mean-token-mean":
        # A row's mean lives entirely in one micro-batch, so its local token count is exact.
        row_tokens = valid.sum(dim=1).clamp(min=1).to(masked.dtype)
        return (masked.sum(dim=1) / row_tokens).sum() / max(norm.num_seqs, 1)
    return masked.sum() / (max(norm.num_seqs, 1) * norm.t_norm)
