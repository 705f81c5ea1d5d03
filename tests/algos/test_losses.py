"""Policy losses against hand-computed values and gradients (spec §4)."""

from __future__ import annotations

import math

import pytest
import torch

from spear_rl.algos.losses import (
    POLICY_LOSSES,
    PolicyLossConfig,
    compute_policy_loss,
    entropy_bonus_term,
    low_var_kl,
    masked_mean,
    register_policy_loss,
)
from spear_rl.registry import UnknownNameError


def _run(name, logp, old_logp, adv, mask, cfg=None, generator=None):
    """Loss output and d(sum of token losses)/d logp."""
    logp = torch.as_tensor(logp, dtype=torch.float64).clone().requires_grad_(True)
    out = compute_policy_loss(
        name,
        logp,
        torch.as_tensor(old_logp, dtype=torch.float64),
        torch.as_tensor(adv, dtype=torch.float64),
        torch.as_tensor(mask, dtype=torch.float64),
        cfg or PolicyLossConfig(),
        generator=generator,
    )
    out.token_loss.sum().backward()
    return out, logp.grad


# --- vanilla ----------------------------------------------------------------------------------

# Ratios (old_logp = 0, logp = log ratio) and advantages, token by token, with defaults
# clip_low 0.2, clip_high 0.28, dual c 3:
#   0: A=+1, r=1.5  -> high clip binds: loss -1.28, grad 0
#   1: A=+1, r=0.5  -> unclipped (low side never binds for A>0): loss -0.5, grad -0.5
#   2: A=-1, r=0.5  -> low clip binds: loss 0.8, grad 0
#   3: A=-1, r=1.25 -> unclipped: loss 1.25, grad 1.25
#   4: A=-1, r=4    -> dual clip binds: loss 3, grad 0
#   5: masked, garbage -inf log-prob -> loss 0, grad 0
RATIOS = [1.5, 0.5, 0.5, 1.25, 4.0]
VANILLA_LOGP = [[math.log(r) for r in RATIOS] + [-math.inf]]
VANILLA_OLD = [[0.0] * 6]
VANILLA_ADV = [[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]]
VANILLA_MASK = [[1, 1, 1, 1, 1, 0]]


def test_vanilla_value_and_gradient_by_hand():
    out, grad = _run("vanilla", VANILLA_LOGP, VANILLA_OLD, VANILLA_ADV, VANILLA_MASK)
    assert out.token_loss[0].tolist() == pytest.approx([-1.28, -0.5, 0.8, 1.25, 3.0, 0.0])
    assert grad[0].tolist() == pytest.approx([0.0, -0.5, 0.0, 1.25, 0.0, 0.0])


def test_vanilla_metrics_by_hand():
    out, _ = _run("vanilla", VANILLA_LOGP, VANILLA_OLD, VANILLA_ADV, VANILLA_MASK)
    m = out.metrics
    assert m["clip_frac_high"] == pytest.approx(1 / 5)
    assert m["clip_frac_low"] == pytest.approx(1 / 5)
    assert m["dual_clip_frac"] == pytest.approx(1 / 5)
    assert m["selected_tokens"] == 0.0
    assert m["valid_tokens"] == 5.0
    # k3: r - 1 - ln r per valid token.
    k3 = [
        0.5 - math.log(1.5),
        -0.5 - math.log(0.5),
        -0.5 - math.log(0.5),
        0.25 - math.log(1.25),
        3.0 - math.log(4.0),
    ]
    assert m["approx_kl"] == pytest.approx(sum(k3) / 5)
    assert all(isinstance(v, float) for v in m.values())


def test_clip_higher_is_asymmetric():
    # A=+1 at r=1.25 is inside 1 + 0.28 but outside a symmetric 1 + 0.2.
    logp, old, adv, mask = [[math.log(1.25)]], [[0.0]], [[1.0]], [[1]]
    out, grad = _run("vanilla", logp, old, adv, mask)
    assert out.token_loss.item() == pytest.approx(-1.25)
    assert grad.item() == pytest.approx(-1.25)
    symmetric = PolicyLossConfig(clip_low=0.2, clip_high=0.2)
    out, grad = _run("vanilla", logp, old, adv, mask, symmetric)
    assert out.token_loss.item() == pytest.approx(-1.2)
    assert grad.item() == 0.0
    # The low side is still 1 - 0.2: A=-1 at r=0.75 is clipped to 0.8.
    out, grad = _run("vanilla", [[math.log(0.75)]], old, [[-1.0]], mask)
    assert out.token_loss.item() == pytest.approx(0.8)
    assert grad.item() == 0.0


def test_dual_clip_applies_only_to_negative_advantages():
    logp, old, mask = [[math.log(5.0), math.log(5.0)]], [[0.0, 0.0]], [[1, 1]]
    out, grad = _run("vanilla", logp, old, [[-2.0, 2.0]], mask)
    # A=-2: min(max(10, 2.56), 3 * 2) = 6; A=+2: clip-high gives -2 * 1.28.
    assert out.token_loss[0].tolist() == pytest.approx([6.0, -2.56])
    assert grad[0].tolist() == [0.0, 0.0]
    assert out.metrics["dual_clip_frac"] == pytest.approx(0.5)
    assert out.metrics["clip_frac_high"] == pytest.approx(0.5)


def test_huge_log_ratio_is_clamped_without_inf_or_nan():
    logp = [[1000.0, 1000.0, -1000.0, -1000.0]]
    old = [[0.0, 0.0, 0.0, 0.0]]
    adv = [[1.0, -1.0, 1.0, -1.0]]
    out, grad = _run("vanilla", logp, old, adv, [[1, 1, 1, 1]])
    assert torch.isfinite(out.token_loss).all() and torch.isfinite(grad).all()
    # r clamps to e^20 / e^-20: clip-high, dual clip, unclipped ~0, clip-low.
    assert out.token_loss[0].tolist() == pytest.approx([-1.28, 3.0, -math.exp(-20), 0.8])
    assert math.isfinite(out.metrics["approx_kl"])


def test_advantages_per_sequence_are_broadcast():
    out, _ = _run(
        "vanilla", [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [2.0, -1.0], [[1, 1], [1, 0]]
    )
    assert out.token_loss.tolist() == [[-2.0, -2.0], [1.0, 0.0]]


# --- clip_cov ---------------------------------------------------------------------------------

# Ten valid tokens: A = +1 for 0-4, -1 for 5-9 (mean 0); logp = -2 + d (0-4) and -2 - d (5-9)
# with d = (1, 1.5, 3, 4.5, 5), so mean logp = -2 exactly and cov = d for both halves:
#   cov = 1, 1.5, 3, 4.5, 5, 1, 1.5, 3, 4.5, 5.
# Inside (1, 5) strictly: tokens 1, 2, 3, 6, 7, 8. Token 3 (A=+1) gets ratio 1.5 (clip-high binds)
# and token 8 (A=-1) ratio 4 (dual clip binds), so the eligible set is {1, 2, 6, 7}.
# Token 10 is masked with garbage values.
D = [1.0, 1.5, 3.0, 4.5, 5.0]
COV_LOGP = [[-2 + d for d in D] + [-2 - d for d in D] + [50.0]]
COV_ADV = [[1.0] * 5 + [-1.0] * 5 + [100.0]]
COV_MASK = [[1] * 10 + [0]]
COV_OLD = [list(COV_LOGP[0])]
COV_OLD[0][3] -= math.log(1.5)
COV_OLD[0][8] -= math.log(4.0)
COV_OLD[0][10] = -math.inf
ELIGIBLE = {1, 2, 6, 7}


def _clip_cov(ratio, seed=0, lb=1.0, ub=5.0):
    cfg = PolicyLossConfig(clip_cov_ratio=ratio, clip_cov_lb=lb, clip_cov_ub=ub)
    gen = torch.Generator().manual_seed(seed)
    return _run("clip_cov", COV_LOGP, COV_OLD, COV_ADV, COV_MASK, cfg, gen)


def _vanilla_cov_example():
    return _run("vanilla", COV_LOGP, COV_OLD, COV_ADV, COV_MASK)


@pytest.mark.parametrize(("ratio", "count"), [(2e-4, 1), (0.2, 2), (0.3, 3), (0.5, 4), (1.0, 4)])
def test_clip_cov_selects_budget_among_eligible_only(ratio, count):
    # Budget max(1, floor(r * 10)): 1, 2, 3, 5 -> capped by the 4 eligible tokens, 10 -> 4.
    vanilla, vanilla_grad = _vanilla_cov_example()
    for seed in range(5):
        out, grad = _clip_cov(ratio, seed)
        selected = set(torch.nonzero(out.selected[0]).flatten().tolist())
        assert len(selected) == count
        assert selected <= ELIGIBLE
        assert out.metrics["selected_tokens"] == float(count)
        for t in range(11):
            if t in selected:
                assert out.token_loss[0, t].item() == 0.0
                assert grad[0, t].item() == 0.0
            else:
                assert out.token_loss[0, t].item() == vanilla.token_loss[0, t].item()
                assert grad[0, t].item() == vanilla_grad[0, t].item()
        # Unselected eligible tokens keep their gradient -A * r = -A.
        for t in ELIGIBLE - selected:
            assert grad[0, t].item() == pytest.approx(-COV_ADV[0][t])


def test_clip_cov_choice_is_random_over_eligible_tokens():
    seen = set()
    for seed in range(40):
        out, _ = _clip_cov(0.1, seed)
        seen |= set(torch.nonzero(out.selected[0]).flatten().tolist())
    assert seen == ELIGIBLE
    same_a, _ = _clip_cov(0.1, seed=3)
    same_b, _ = _clip_cov(0.1, seed=3)
    assert torch.equal(same_a.selected, same_b.selected)


def test_clip_cov_with_nothing_in_bounds_equals_vanilla():
    vanilla, _ = _vanilla_cov_example()
    out, _ = _clip_cov(0.5, lb=10.0, ub=20.0)
    assert out.metrics["selected_tokens"] == 0.0
    assert torch.equal(out.token_loss, vanilla.token_loss)
    assert out.metrics["clip_frac_high"] == pytest.approx(0.1)
    assert out.metrics["dual_clip_frac"] == pytest.approx(0.1)


def test_clip_cov_with_global_rng_and_empty_mask():
    cfg = PolicyLossConfig(clip_cov_ratio=0.2)
    out, _ = _run("clip_cov", COV_LOGP, COV_OLD, COV_ADV, COV_MASK, cfg)  # no generator
    assert out.metrics["selected_tokens"] == 2.0
    out, grad = _run("clip_cov", COV_LOGP, COV_OLD, COV_ADV, [[0] * 11], cfg)
    assert out.metrics["selected_tokens"] == 0.0
    assert out.token_loss.abs().sum().item() == 0.0 and grad.abs().sum().item() == 0.0


# --- kl_cov -----------------------------------------------------------------------------------

# Five valid tokens, A = (1, -1, 1, -1, 0) (mean 0), logp = (-1.5, -4, 0.5, -2.5, -2.5)
# (mean -2): cov = (0.5, 2, 2.5, 0.5, 0). Token 5 is masked with values that would top the list.
# Log-ratio logp - old_logp is +0.1 everywhere except token 2, where it is -0.3.
KL_LOGP = [[-1.5, -4.0, 0.5, -2.5, -2.5, 100.0]]
KL_ADV = [[1.0, -1.0, 1.0, -1.0, 0.0, 100.0]]
KL_MASK = [[1, 1, 1, 1, 1, 0]]
KL_OLD = [[lp - 0.1 for lp in KL_LOGP[0]]]
KL_OLD[0][2] = KL_LOGP[0][2] + 0.3


@pytest.mark.parametrize(("ratio", "top"), [(1e-6, {2}), (0.2, {2}), (0.4, {1, 2}), (1.0, None)])
def test_kl_cov_penalises_exactly_the_top_k_tokens(ratio, top):
    top = top if top is not None else {0, 1, 2, 3, 4}
    cfg = PolicyLossConfig(kl_cov_ratio=ratio, kl_cov_coef=0.1)
    out, grad = _run("kl_cov", KL_LOGP, KL_OLD, KL_ADV, KL_MASK, cfg)
    log_ratio = [0.1, 0.1, -0.3, 0.1, 0.1]
    for t in range(5):
        a, lr = KL_ADV[0][t], log_ratio[t]
        r = math.exp(lr)
        expected = -a * r + (0.1 * abs(lr) if t in top else 0.0)
        expected_grad = -a * r + (0.1 * math.copysign(1.0, lr) if t in top else 0.0)
        assert out.token_loss[0, t].item() == pytest.approx(expected)
        assert grad[0, t].item() == pytest.approx(expected_grad)
    assert out.token_loss[0, 5].item() == 0.0 and grad[0, 5].item() == 0.0
    assert set(torch.nonzero(out.selected[0]).flatten().tolist()) == top
    assert out.metrics["selected_tokens"] == float(len(top))
    assert out.metrics["clip_frac_high"] == 0.0  # kl_cov never clips


def test_kl_cov_with_empty_mask_selects_nothing():
    out, _ = _run("kl_cov", KL_LOGP, KL_OLD, KL_ADV, [[0] * 6])
    assert out.metrics["selected_tokens"] == 0.0
    assert out.token_loss.abs().sum().item() == 0.0


# --- gpg and extra terms ----------------------------------------------------------------------


def test_gpg_value_and_gradient():
    out, grad = _run(
        "gpg", [[-0.5, -2.0, -math.inf]], [[9.0, 9.0, 9.0]], [[2.0, -1.0, 5.0]], [[1, 1, 0]]
    )
    assert out.token_loss[0].tolist() == pytest.approx([1.0, -2.0, 0.0])
    assert grad[0].tolist() == pytest.approx([-2.0, 1.0, 0.0])


def test_entropy_bonus_term():
    term = entropy_bonus_term(torch.tensor([[1.0, 2.0]]), 0.01)
    assert term[0].tolist() == pytest.approx([-0.01, -0.02])


def test_low_var_kl_by_hand_and_clamped():
    kl = low_var_kl(
        torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([math.log(2.0), 0.0, 100.0, -100.0])
    )
    # r = 2: 2 - ln 2 - 1; r = 1: 0; both extremes clamp to the upper limit 10.
    assert kl.tolist() == pytest.approx([1 - math.log(2.0), 0.0, 10.0, 10.0], rel=1e-6)


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, math.nan], [4.0, math.inf, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx(7 / 3)
    assert masked_mean(x, mask.bool()).item() == pytest.approx(7 / 3)
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0


# --- names and validation ---------------------------------------------------------------------


def test_unknown_loss_lists_known_names():
    with pytest.raises(UnknownNameError, match="clip_cov, gpg, kl_cov, vanilla"):
        _run("clipcov", [[0.0]], [[0.0]], [[1.0]], [[1]])


def test_register_policy_loss_adds_a_name():
    name = "test_only_zero"

    @register_policy_loss(name)
    def _zero(inp, cfg, generator=None):
        from spear_rl.algos.losses import _LossParts

        return _LossParts(inp.logp * 0.0, {"custom": 1.0})

    try:
        out, _ = _run(name, [[0.5]], [[0.0]], [[1.0]], [[1]])
        assert out.token_loss.item() == 0.0 and out.metrics["custom"] == 1.0
    finally:  # a test-only name must not leak into later tests (docs/config.md lists the choices)
        POLICY_LOSSES._items.pop(name)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="mask must have"):
        _run("vanilla", [[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]], [[1]])
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        _run("vanilla", [0.0], [0.0], [1.0], [1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_low": 1.0},
        {"clip_high": -0.1},
        {"dual_clip_c": 1.0},
        {"clip_cov_ratio": 2.0},
        {"kl_cov_ratio": -1.0},
        {"clip_cov_lb": 5.0, "clip_cov_ub": 1.0},
        {"kl_cov_coef": -1.0},
    ],
)
def test_bad_loss_config_is_rejected(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PolicyLossConfig(**kwargs)


# --- deviations from the reference, each an option (docs/method.md) ---------------------------


def test_clip_cov_without_the_dual_clip_is_the_reference_form():
    # Token 8 (A = -1, ratio 4): the dual clip caps its loss at 3 and keeps it out of the pick;
    # without it the loss is 4 and the token (cov 4.5) becomes a candidate.
    nothing = PolicyLossConfig(clip_cov_lb=10.0, clip_cov_ub=20.0, clip_cov_dual_clip=False)
    out, _ = _run("clip_cov", COV_LOGP, COV_OLD, COV_ADV, COV_MASK, nothing)
    assert out.token_loss[0, 8].item() == pytest.approx(4.0)
    assert out.metrics["dual_clip_frac"] == 0.0
    every = PolicyLossConfig(clip_cov_ratio=1.0, clip_cov_dual_clip=False)
    out, _ = _run("clip_cov", COV_LOGP, COV_OLD, COV_ADV, COV_MASK, every)
    assert set(torch.nonzero(out.selected[0]).flatten().tolist()) == ELIGIBLE | {8}
    default, _ = _clip_cov(0.1, lb=10.0, ub=20.0)
    assert default.token_loss[0, 8].item() == pytest.approx(3.0)


@pytest.mark.parametrize(("clamp", "penalty"), [(True, 2.0), (False, 3.0)])
def test_kl_cov_log_ratio_clamp_is_an_option(clamp, penalty):
    # One token, A = 0, log-ratio 30: the penalty is 0.1 * |log-ratio|, clamped at 20 or not.
    cfg = PolicyLossConfig(kl_cov_coef=0.1, cov_log_ratio_clamp=clamp)
    out, _ = _run("kl_cov", [[30.0]], [[0.0]], [[0.0]], [[1]], cfg)
    assert out.token_loss[0, 0].item() == pytest.approx(penalty)
