"""Advantage estimators against hand-computed values (spec §2), plus group-level properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spear_rl.algos.advantages import (
    ADV_ESTIMATORS,
    AdvantageConfig,
    AdvantageInput,
    compute_advantages,
    discounted_returns,
    group_reward_stats,
    register_adv_est,
)
from spear_rl.registry import UnknownNameError

EPS = 1e-6


def _inp(rewards, groups, trajs, **extra) -> AdvantageInput:
    return AdvantageInput(
        rewards=torch.tensor(rewards, dtype=torch.float32),
        group_ids=torch.tensor(groups),
        traj_ids=torch.tensor(trajs),
        **{k: torch.tensor(v) for k, v in extra.items()},
    )


# Group 0: three trajectories scoring 1, 2, 3 (mean 2, unbiased std 1); group 1: two equal
# rewards (std 0); group 2: a lone trajectory.
SIMPLE = _inp([1, 2, 3, 5, 5, 7], [0, 0, 0, 1, 1, 2], [0, 1, 2, 3, 4, 5])


def _adv(name, inp, **cfg) -> list[float]:
    return compute_advantages(name, inp, AdvantageConfig(**cfg)).tolist()


def test_grpo_hand_example():
    expected = [-1 / (1 + EPS), 0.0, 1 / (1 + EPS), 0.0, 0.0, 0.0]
    assert _adv("grpo", SIMPLE) == pytest.approx(expected, abs=1e-6)


def test_dr_grpo_hand_example():
    assert _adv("dr_grpo", SIMPLE) == pytest.approx([-1, 0, 1, 0, 0, 0], abs=1e-6)


def test_rloo_hand_example():
    # Leave-one-out baselines in group 0: (2+3)/2, (1+3)/2, (1+2)/2.
    assert _adv("rloo", SIMPLE) == pytest.approx([-1.5, 0, 1.5, 0, 0, 0], abs=1e-6)


def test_lone_trajectory_with_several_samples_gets_zero():
    # One trajectory with three per-turn samples and a penalty on one: still a group of one.
    inp = _inp([1.0, 0.9, 1.0], [4, 4, 4], [7, 7, 7])
    for name in ("grpo", "dr_grpo", "rloo"):
        for stats in ("per_trajectory", "per_sample"):
            assert _adv(name, inp, group_stats=stats) == [0.0, 0.0, 0.0]


def test_per_trajectory_and_per_sample_differ_when_a_trajectory_has_more_samples():
    # Trajectory 0 has three samples of reward 1, trajectory 1 one sample of reward 0.
    inp = _inp([1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1])
    # per_trajectory: scores (1, 0), mean 0.5, std sqrt(0.5).
    assert _adv("dr_grpo", inp) == pytest.approx([0.5, 0.5, 0.5, -0.5])
    s = math.sqrt(0.5)
    assert _adv("grpo", inp) == pytest.approx([0.5 / s, 0.5 / s, 0.5 / s, -0.5 / s], rel=1e-5)
    # per_sample: mean 0.75, unbiased std over (1, 1, 1, 0) = 0.5.
    assert _adv("dr_grpo", inp, group_stats="per_sample") == pytest.approx(
        [0.25, 0.25, 0.25, -0.75]
    )
    assert _adv("grpo", inp, group_stats="per_sample") == pytest.approx(
        [0.5, 0.5, 0.5, -1.5], rel=1e-5
    )
    # rloo: per_trajectory baseline is the other trajectory's score; per_sample the other samples.
    assert _adv("rloo", inp) == pytest.approx([1, 1, 1, -1])
    assert _adv("rloo", inp, group_stats="per_sample") == pytest.approx(
        [1 - 2 / 3, 1 - 2 / 3, 1 - 2 / 3, -1]
    )


def test_per_sample_penalty_moves_only_that_sample():
    # Trajectory 0: rewards 10 and 9.9 (an invalid turn), score 9.95; trajectory 1: score 0.
    inp = _inp([10.0, 9.9, 0.0], [0, 0, 0], [0, 0, 1])
    assert _adv("dr_grpo", inp) == pytest.approx([5.025, 4.925, -4.975], rel=1e-6)


def test_grpo_is_invariant_to_affine_reward_changes():
    base = [0.0, 1.0, 3.0, 2.0, 7.0, -1.0, 4.0]
    groups, trajs = [0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3, 4, 5, 6]
    reference = _adv("grpo", _inp(base, groups, trajs))
    for scale, shift in ((2.0, 5.0), (0.5, -3.0), (10.0, 0.0)):
        changed = _inp([scale * r + shift for r in base], groups, trajs)
        assert _adv("grpo", changed) == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_group_reward_stats_hand_example():
    ids, mean, std = group_reward_stats(
        torch.tensor([1.0, 0.8, 3.0, 5.0, 5.0, 7.0]),
        torch.tensor([9, 9, 9, 1, 1, 4]),
        torch.tensor([0, 0, 1, 2, 3, 4]),
    )
    assert ids.tolist() == [1, 4, 9]
    # Group 9: trajectory scores 0.9 and 3.0 -> mean 1.95, std |3.0 - 0.9| / sqrt(2).
    assert mean.tolist() == pytest.approx([5.0, 7.0, 1.95])
    assert std.tolist() == pytest.approx([0.0, 0.0, 2.1 / math.sqrt(2)], rel=1e-6)
    _, mean_s, std_s = group_reward_stats(
        torch.tensor([1.0, 0.8, 3.0]),
        torch.tensor([0, 0, 0]),
        torch.tensor([0, 0, 1]),
        "per_sample",
    )
    assert mean_s.tolist() == pytest.approx([1.6])
    assert std_s.tolist() == pytest.approx([math.sqrt((0.36 + 0.64 + 1.96) / 2)], rel=1e-6)


def test_discounted_returns_by_hand_in_any_sample_order():
    # Trajectory 5 turns (0, 1, 2) with rewards (1, 0, 2), given out of order; trajectory 3 alone.
    returns = discounted_returns(
        torch.tensor([2.0, 4.0, 1.0, 0.0]),
        torch.tensor([5, 3, 5, 5]),
        torch.tensor([2, 0, 0, 1]),
        gamma=0.95,
    )
    # G2 = 2, G1 = 0 + 0.95 * 2 = 1.9, G0 = 1 + 0.95 * 1.9 = 2.805.
    assert returns.tolist() == pytest.approx([2.0, 4.0, 2.805, 1.9], rel=1e-6)
    empty = torch.zeros(0, dtype=torch.long)
    assert discounted_returns(torch.zeros(0), empty, empty, 0.95).shape == (0,)


def _gigpo_example() -> AdvantageInput:
    # Group 0: trajectory 0 (turns on anchors 11, 12, 13; env rewards 0, 0, 10; R = 10) and
    # trajectory 1 (anchors 11, 14; rewards 0, 0; R = 0). Group 1: trajectory 2 on anchor 11
    # (same observation id, other group: must not join group 0's step group). Shuffled order.
    rows = [
        # reward, group, traj, turn, step_reward, anchor
        (0.0, 0, 1, 1, 0.0, 14),
        (10.0, 0, 0, 2, 10.0, 13),
        (1.0, 1, 2, 0, 1.0, 11),
        (10.0, 0, 0, 0, 0.0, 11),
        (0.0, 0, 1, 0, 0.0, 11),
        (10.0, 0, 0, 1, 0.0, 12),
    ]
    cols = list(zip(*rows, strict=True))
    return AdvantageInput(
        rewards=torch.tensor(cols[0]),
        group_ids=torch.tensor(cols[1]),
        traj_ids=torch.tensor(cols[2]),
        turn_index=torch.tensor(cols[3]),
        step_rewards=torch.tensor(cols[4]),
        anchor_ids=torch.tensor(cols[5]),
    )


def test_gigpo_hand_example():
    # gamma 0.5: trajectory 0 returns (2.5, 5, 10), trajectory 1 (0, 0), trajectory 2 (1).
    # Only step group (group 0, anchor 11) has two members: returns 2.5 and 0 -> +-1.25.
    # Episode part (dr_grpo): trajectory 0 +5, trajectory 1 -5, lone group 1 -> 0.
    adv = _adv(
        "gigpo", _gigpo_example(), gigpo_gamma=0.5, gigpo_step_weight=2.0, gigpo_episode_norm="mean"
    )
    assert adv == pytest.approx([-5.0, 5.0, 0.0, 5.0 + 2.5, -5.0 - 2.5, 5.0])


def test_gigpo_normalised_parts():
    # Episode std over scores (10, 0) = sqrt(50); step std over (2.5, 0) = 2.5 / sqrt(2).
    adv = _adv(
        "gigpo",
        _gigpo_example(),
        gigpo_gamma=0.5,
        gigpo_episode_norm="std",
        gigpo_step_norm="std",
    )
    e = 5.0 / (math.sqrt(50) + EPS)
    s = 1.25 / (2.5 / math.sqrt(2) + EPS)
    assert adv == pytest.approx([-e, e, 0.0, e + s, -e - s, e], rel=1e-6)


def test_gigpo_groups_repeated_anchor_within_one_trajectory():
    # One trajectory revisits observation 7 at turns 0 and 2 (rewards 1, 0, 1; gamma 1):
    # returns 2 and 1 share a step group -> +-0.5; the episode part is 0 (a lone trajectory).
    inp = _inp(
        [2, 2, 2],
        [0, 0, 0],
        [0, 0, 0],
        turn_index=[0, 1, 2],
        step_rewards=[1.0, 0.0, 1.0],
        anchor_ids=[7, 8, 7],
    )
    assert _adv("gigpo", inp, gigpo_gamma=1.0) == pytest.approx([0.5, 0.0, -0.5])


def test_gigpo_needs_its_fields():
    with pytest.raises(ValueError, match="turn_index"):
        compute_advantages("gigpo", SIMPLE, AdvantageConfig())


def test_empty_batch_gives_empty_advantages():
    empty = _inp([], [], [], turn_index=[], step_rewards=[], anchor_ids=[])
    empty.group_ids = empty.group_ids.long()
    empty.traj_ids = empty.traj_ids.long()
    empty.turn_index = empty.turn_index.long()
    empty.anchor_ids = empty.anchor_ids.long()
    for name in ADV_ESTIMATORS:
        assert compute_advantages(name, empty, AdvantageConfig()).shape == (0,)


def test_output_keeps_reward_dtype():
    inp = _inp([1, 2], [0, 0], [0, 1])
    inp.rewards = inp.rewards.double()
    assert compute_advantages("grpo", inp, AdvantageConfig()).dtype == torch.float64
    inp.rewards = torch.tensor([1, 2])  # integer rewards come back in the default float dtype
    assert compute_advantages("grpo", inp, AdvantageConfig()).dtype == torch.float32


def test_unknown_estimator_lists_known_names():
    with pytest.raises(UnknownNameError, match="dr_grpo, gigpo, grpo, rloo") as err:
        compute_advantages("gpro", SIMPLE, AdvantageConfig())
    assert "Did you mean 'grpo'" in str(err.value)


def test_register_adv_est_adds_a_name():
    name = "test_only_constant"

    @register_adv_est(name)
    def _constant(inp, cfg):
        return torch.ones_like(inp.rewards)

    try:
        assert compute_advantages(name, SIMPLE, AdvantageConfig()).tolist() == [1.0] * 6
    finally:  # a test-only name must not leak into later tests (docs/config.md lists the choices)
        ADV_ESTIMATORS._items.pop(name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("group_stats", "per_turn"),
        ("gigpo_episode_norm", "x"),
        ("gigpo_step_norm", "x"),
        ("eps", 0.0),
        ("gigpo_gamma", 1.5),
    ],
)
def test_bad_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        AdvantageConfig(**{field: value})


def test_bad_inputs_raise_clear_errors():
    cfg = AdvantageConfig()
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_advantages("grpo", _inp([1.0, math.nan], [0, 0], [0, 1]), cfg)
    with pytest.raises(ValueError, match="different group_ids"):
        compute_advantages("grpo", _inp([1.0, 2.0], [0, 1], [3, 3]), cfg)
    with pytest.raises(ValueError, match="group_ids must have shape"):
        compute_advantages("grpo", _inp([1.0, 2.0], [0], [0, 1]), cfg)
    with pytest.raises(ValueError, match="integer ids"):
        compute_advantages("grpo", _inp([1.0, 2.0], [0.0, 0.5], [0, 1]), cfg)
    with pytest.raises(ValueError, match="1-D"):
        compute_advantages("grpo", _inp([[1.0, 2.0]], [0, 0], [0, 1]), cfg)
    with pytest.raises(ValueError, match="group_stats"):
        group_reward_stats(torch.ones(2), torch.zeros(2, dtype=torch.long), torch.arange(2), "x")
    with pytest.raises(ValueError, match="repeats"):
        discounted_returns(torch.ones(2), torch.tensor([0, 0]), torch.tensor([1, 1]), 0.9)
    with pytest.raises(ValueError, match="step_rewards"):
        discounted_returns(torch.tensor([math.inf]), torch.tensor([0]), torch.tensor([0]), 0.9)


# --- properties -------------------------------------------------------------------------------


@st.composite
def batches(draw) -> AdvantageInput:
    """Random groups of trajectories with 1-4 per-turn samples each, anchors from a small pool."""
    rows = []
    traj = 0
    for group in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(1, 4))):
            score = draw(st.integers(-3, 10))
            for turn in range(draw(st.integers(1, 4))):
                penalty = draw(st.sampled_from([0.0, -0.1]))
                step = float(draw(st.integers(0, 2)))
                anchor = draw(st.integers(0, 3))
                rows.append((score + penalty, group * 10, traj * 3 + 1, turn, step, anchor))
            traj += 1
    cols = list(zip(*rows, strict=True))
    return AdvantageInput(
        rewards=torch.tensor(cols[0], dtype=torch.float64),
        group_ids=torch.tensor(cols[1]),
        traj_ids=torch.tensor(cols[2]),
        turn_index=torch.tensor(cols[3]),
        step_rewards=torch.tensor(cols[4], dtype=torch.float64),
        anchor_ids=torch.tensor(cols[5]),
    )


INPUT_FIELDS = ("rewards", "group_ids", "traj_ids", "turn_index", "step_rewards", "anchor_ids")


@settings(max_examples=50, deadline=None)
@given(
    batch=batches(),
    seed=st.integers(0, 2**31 - 1),
    stats=st.sampled_from(["per_trajectory", "per_sample"]),
)
def test_permuting_samples_permutes_advantages(batch, seed, stats):
    cfg = AdvantageConfig(group_stats=stats)
    n = batch.rewards.numel()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    permuted = AdvantageInput(**{f: getattr(batch, f)[perm] for f in INPUT_FIELDS})
    for name in ("grpo", "dr_grpo", "rloo", "gigpo"):
        original = compute_advantages(name, batch, cfg)
        shuffled = compute_advantages(name, permuted, cfg)
        torch.testing.assert_close(shuffled, original[perm], rtol=1e-9, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(batch=batches())
def test_dr_grpo_sums_to_zero_per_group(batch):
    groups, trajs = batch.group_ids, batch.traj_ids
    per_sample = compute_advantages("dr_grpo", batch, AdvantageConfig(group_stats="per_sample"))
    per_traj = compute_advantages("dr_grpo", batch, AdvantageConfig())
    for g in groups.unique():
        in_group = groups == g
        # per_sample: samples' advantages cancel; per_trajectory: trajectories' mean advantages.
        assert abs(float(per_sample[in_group].sum())) < 1e-9
        traj_means = [float(per_traj[trajs == t].mean()) for t in trajs[in_group].unique()]
        assert abs(sum(traj_means)) < 1e-9


def test_grpo_zero_std_group_keeps_unscaled_penalty_residuals():
    # both trajectories score (10 + 9.9) / 2 = 9.95, so the trajectory std is 0; the per-turn
    # penalty residuals stay +-0.05 (by hand) instead of +-0.05 / 1e-6
    from spear_rl.algos.advantages import AdvantageConfig, AdvantageInput, compute_advantages

    inp = AdvantageInput(
        rewards=torch.tensor([10.0, 9.9, 10.0, 9.9]),
        group_ids=torch.tensor([0, 0, 0, 0]),
        traj_ids=torch.tensor([0, 0, 1, 1]),
    )
    adv = compute_advantages("grpo", inp, AdvantageConfig())
    assert torch.allclose(adv, torch.tensor([0.05, -0.05, 0.05, -0.05]), atol=1e-5)
