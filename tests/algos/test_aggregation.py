"""Loss aggregation modes by hand, and exactness across micro-batches and ranks (spec §5)."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from spear_rl.algos.aggregation import AGG_MODES, AggregationNorm, aggregate_loss, aggregation_norm

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
NORM = AggregationNorm(num_tokens=3.0, num_seqs=2, t_norm=4.0)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", 7 / 3),  # (1 + 2 + 4) / 3 tokens
        ("seq-mean-token-sum", 7 / 2),  # (3 + 4) / 2 sequences
        ("seq-mean-token-mean", (3 / 2 + 4 / 1) / 2),
        ("seq-mean-token-sum-norm", 7 / (2 * 4)),  # divided by B and T_norm
    ],
)
def test_each_mode_by_hand(mode, expected):
    assert aggregate_loss(LOSS, MASK, mode, NORM).item() == pytest.approx(expected)


def test_fully_masked_row_contributes_zero_in_seq_mean_token_mean():
    loss = torch.tensor([[1.0, 2.0, 3.0], [math.nan, math.inf, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    norm = AggregationNorm(num_tokens=2.0, num_seqs=2, t_norm=4.0)
    # Row 0 mean 1.5, row 1 contributes 0 but still counts as a sequence.
    assert aggregate_loss(loss, mask, "seq-mean-token-mean", norm).item() == pytest.approx(0.75)
    for mode in AGG_MODES:
        assert math.isfinite(aggregate_loss(loss, mask, mode, norm).item())


def test_aggregation_norm_counts_all_micro_batches():
    masks = [torch.tensor([[1, 1, 0], [0, 0, 1]]), torch.tensor([[1, 0, 0, 1]])]
    norm = aggregation_norm(masks, t_norm=512)
    assert norm == AggregationNorm(num_tokens=5.0, num_seqs=3, t_norm=512.0)


def test_empty_mini_batch_gives_zero():
    norm = aggregation_norm([], t_norm=8)
    assert norm.num_tokens == 0.0 and norm.num_seqs == 0
    empty = torch.zeros(0, 3)
    for mode in AGG_MODES:
        assert aggregate_loss(empty, empty, mode, norm).item() == 0.0


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="token-mean, seq-mean-token-sum"):
        aggregate_loss(LOSS, MASK, "mean", NORM)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregate_loss(LOSS, MASK[:1], "token-mean", NORM)
    with pytest.raises(ValueError, match="t_norm"):
        aggregation_norm([MASK], t_norm=0)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        aggregation_norm([MASK[0]], t_norm=4)


# --- exactness under splitting ----------------------------------------------------------------


@st.composite
def split_batches(draw):
    """A mini-batch (B x T mask and values), a partition of its rows into micro-batches, and an
    assignment of micro-batches to simulated ranks."""
    b, t = draw(st.integers(1, 7)), draw(st.integers(1, 6))
    mask = draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b))
    seed = draw(st.integers(0, 2**31 - 1))
    order = draw(st.permutations(range(b)))
    cuts = sorted(draw(st.sets(st.integers(1, b - 1), max_size=b - 1))) if b > 1 else []
    parts = [order[i:j] for i, j in zip([0, *cuts], [*cuts, b], strict=True)]
    ranks = draw(st.integers(1, 3))
    rank_of_part = [draw(st.integers(0, ranks - 1)) for _ in parts]
    return torch.tensor(mask, dtype=torch.float32), seed, parts, rank_of_part, ranks


@settings(max_examples=50, deadline=None)
@given(batch=split_batches(), mode=st.sampled_from(AGG_MODES))
def test_split_gradients_equal_unsplit(batch, mode):
    mask, seed, parts, rank_of_part, ranks = batch
    values = torch.randn(mask.shape, generator=torch.Generator().manual_seed(seed)) * 3
    t_norm = float(mask.shape[1] + 2)

    # Unsplit: one micro-batch holds the whole mini-batch.
    weights = values.clone().requires_grad_(True)
    token_loss = weights**2 + weights  # any differentiable per-token loss
    full = aggregate_loss(token_loss, mask, mode, aggregation_norm([mask], t_norm))
    full.backward()
    unsplit_grad = weights.grad.clone()

    # Split: the norm covers every part of every rank (what the all-reduce computes); each rank
    # backpropagates its micro-batches' shares; gradients are summed over ranks.
    norm = aggregation_norm([mask[idx] for idx in parts], t_norm)
    summed_grad = torch.zeros_like(values)
    total = 0.0
    for rank in range(ranks):
        rank_weights = values.clone().requires_grad_(True)
        for idx, owner in zip(parts, rank_of_part, strict=True):
            if owner != rank:
                continue
            micro = rank_weights[idx]
            share = aggregate_loss(micro**2 + micro, mask[idx], mode, norm)
            share.backward()
            total += share.item()
        summed_grad += rank_weights.grad if rank_weights.grad is not None else 0.0
    torch.testing.assert_close(summed_grad, unsplit_grad, rtol=0, atol=1e-6)
    assert total == pytest.approx(full.item(), rel=1e-5, abs=1e-6)


# --- real ranks -------------------------------------------------------------------------------


def _two_rank_worker(rank: int, init_file: str, result_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # Rank 0 holds rows 0-1 (2 tokens), rank 1 holds row 2 (3 tokens).
        mask = MASK3[:2] if rank == 0 else MASK3[2:]
        norm = aggregation_norm([mask], t_norm=4.0)
        loss = aggregate_loss(VALUES3[:2] if rank == 0 else VALUES3[2:], mask, "token-mean", norm)
        share = torch.tensor([norm.num_tokens, float(norm.num_seqs), loss.item()])
        dist.all_reduce(share)
        if rank == 0:
            torch.save(share, result_file)
    finally:
        dist.destroy_process_group()


MASK3 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
VALUES3 = torch.tensor([[1.0, 9.0, 9.0], [2.0, 3.0, 9.0], [4.0, 5.0, 6.0]])


def test_aggregation_norm_inside_an_initialised_process_group():
    # A one-rank gloo group in this process: the all-reduce runs and leaves the counts as they are.
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'init')}"
        dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
        try:
            norm = aggregation_norm([MASK3[:2], MASK3[2:]], t_norm=4.0)
        finally:
            dist.destroy_process_group()
    assert norm == AggregationNorm(num_tokens=5.0, num_seqs=3, t_norm=4.0)


@pytest.mark.slow
def test_aggregation_norm_all_reduces_over_real_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "result.pt")
        mp.spawn(_two_rank_worker, args=(init_file, result_file), nprocs=2, join=True)
        tokens_sum, seqs_sum, loss_sum = torch.load(result_file).tolist()
    # Each rank sees the global counts (5 tokens, 3 sequences); shares add to (1+3+4+5+6)/5.
    assert tokens_sum == 10.0 and seqs_sum == 6.0
    assert loss_sum == pytest.approx(19 / 5)
