"""clip_cov / kl_cov choose their tokens over a whole mini-batch, whatever its layout (spec §4).

The choice must not depend on padding, on how the mini-batch is split, nor (through the two
collective hooks) on how it is spread over processes.
"""

from __future__ import annotations

import threading

import pytest
import torch

from spear_rl.algos.cov_selection import token_budget, token_covariance, top_k_mask
from spear_rl.algos.losses import PolicyLossConfig, compute_policy_loss, select_cov_tokens

CFG = PolicyLossConfig(clip_cov_ratio=0.25, clip_cov_lb=-50.0, clip_cov_ub=50.0, kl_cov_ratio=0.25)


def _mini_batch(seed: int = 0, rows: int = 6, width: int = 7):
    """Padded [B, T] tensors with rows of different lengths (mask 0 holds garbage)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    mask = (torch.arange(width)[None] < lengths[:, None]).double()
    logp = -torch.rand(rows, width, generator=gen, dtype=torch.float64) * 4
    old = logp + 0.1 * torch.randn(rows, width, generator=gen, dtype=torch.float64)
    adv = torch.randn(rows, generator=gen, dtype=torch.float64)[:, None].expand(rows, width)
    garbage = mask == 0
    return logp.masked_fill(garbage, 1e9), old.masked_fill(garbage, -1e9), adv, mask


def _flat(x, mask):
    return x[mask > 0][None]


@pytest.mark.parametrize("name", ["clip_cov", "kl_cov"])
def test_padded_batch_and_concatenated_valid_tokens_choose_the_same(name):
    logp, old, adv, mask = _mini_batch()
    padded = select_cov_tokens(name, logp, old, adv, mask, CFG, torch.Generator().manual_seed(3))
    flat = select_cov_tokens(
        name,
        _flat(logp, mask),
        _flat(old, mask),
        _flat(adv, mask),
        torch.ones_like(_flat(mask, mask)),
        CFG,
        torch.Generator().manual_seed(3),
    )
    assert torch.equal(padded[mask > 0], flat[0])
    n = int(mask.sum())
    assert int(padded.sum()) == token_budget(0.25, n)  # bounds wide: every token is a candidate
    assert not padded[mask == 0].any()


def test_given_selection_is_what_the_loss_acts_on():
    logp, old, adv, mask = _mini_batch()
    selected = torch.zeros_like(mask, dtype=torch.bool)
    selected[0, 0] = True
    out = compute_policy_loss("clip_cov", logp, old, adv, mask, CFG, selected=selected)
    assert torch.equal(out.selected, selected)
    assert out.token_loss[0, 0] == 0.0 and out.metrics["selected_tokens"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        compute_policy_loss("kl_cov", logp, old, adv, mask, CFG, selected=selected[:, :2])
    with pytest.raises(ValueError, match="selects no tokens"):
        select_cov_tokens("vanilla", logp, old, adv, mask, CFG)


def test_covariance_means_and_top_k_by_hand():
    cov, n = token_covariance(torch.tensor([1.0, -1.0, 0.0]), torch.tensor([-1.0, -3.0, -2.0]))
    # means 0 and -2: cov = (1)(1), (-1)(-1), 0
    assert n == 3 and cov.tolist() == [1.0, 1.0, 0.0]
    chosen = top_k_mask(torch.tensor([0.3, 0.9, 0.5, 0.7]), torch.tensor([1, 0, 1, 1]).bool(), 2)
    assert chosen.tolist() == [False, False, True, True]  # 0.9 is not eligible
    everything = top_k_mask(torch.tensor([0.3, 0.9]), torch.tensor([True, False]), 5)
    assert everything.tolist() == [True, False]  # fewer candidates than k: all of them


class FakeWorld:
    """In-process stand-in for a process group: each rank is a thread, collectives meet at a barrier."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size)
        self.slots: list[torch.Tensor | None] = [None] * size

    def _exchange(self, rank: int, x: torch.Tensor) -> list[torch.Tensor]:
        self.slots[rank] = x
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out

    def hooks(self, rank: int):
        return (
            lambda x: torch.stack(self._exchange(rank, x)).sum(0),
            lambda x: torch.cat(self._exchange(rank, x)),
        )


def _on_two_ranks(name, rows_per_rank, logp, old, adv, mask, cfg=CFG):
    world, results = FakeWorld(2), {}

    def run(rank, rows):
        reduce_sum, all_gather = world.hooks(rank)
        results[rank] = select_cov_tokens(
            name,
            logp[rows],
            old[rows],
            adv[rows],
            mask[rows],
            cfg,
            torch.Generator().manual_seed(10 + rank),
            reduce_sum=reduce_sum,
            all_gather=all_gather,
        )

    threads = [threading.Thread(target=run, args=(r, rows)) for r, rows in enumerate(rows_per_rank)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return torch.cat([results[0], results[1]])


def test_kl_cov_over_two_ranks_chooses_what_one_process_chooses():
    logp, old, adv, mask = _mini_batch(seed=4, rows=8)
    alone = select_cov_tokens("kl_cov", logp, old, adv, mask, CFG)
    split = _on_two_ranks("kl_cov", [slice(0, 3), slice(3, 8)], logp, old, adv, mask)
    assert torch.equal(split, alone)


def test_clip_cov_over_two_ranks_spends_the_global_budget_on_eligible_tokens():
    logp, old, adv, mask = _mini_batch(seed=5, rows=8)
    # ratio clips too wide to bind, so the eligible tokens are those with 0 < cov < 50
    narrow = PolicyLossConfig(
        clip_low=0.99, clip_high=10.0, clip_cov_ratio=0.25, clip_cov_lb=0.0, clip_cov_ub=50.0
    )
    split = _on_two_ranks("clip_cov", [slice(0, 5), slice(5, 8)], logp, old, adv, mask, narrow)
    # the covariance with means over both ranks' tokens, computed in one process
    cov, n = token_covariance(adv[mask > 0], logp[mask > 0])
    eligible = torch.zeros_like(mask, dtype=torch.bool)
    eligible[mask > 0] = cov > narrow.clip_cov_lb
    assert int(split.sum()) == min(token_budget(0.25, n), int(eligible.sum()))
    assert not (split & ~eligible).any()
