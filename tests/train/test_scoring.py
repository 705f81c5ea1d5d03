"""score_batch: which samples the update trains on under the Dr.BoT void-turn filter."""

import pytest

from spear_rl.rollout.sample import Sample, Trajectory
from spear_rl.train.config import AlgoConfig
from spear_rl.train.scoring import score_batch


def _trajectory(
    traj_id: int, reward: float, *, valid: bool, parsed: bool, group_id: int = 0
) -> Trajectory:
    sample = Sample(
        prompt_ids=[1, 2],
        response_ids=[3, 4],
        loss_mask=[1, 1],
        old_logprobs=[-1.0, -1.0],
        group_id=group_id,
        traj_id=traj_id,
        valid=valid,
        parsed=parsed,
        num_invalid=int(not valid),
    )
    traj = Trajectory(group_id=group_id, traj_id=traj_id, task_seed=0, task="t", samples=[sample])
    traj.episode_reward = reward
    return traj


def trained(scored) -> list[int]:
    """Trajectories whose samples carry a loss (filtered ones stay, with their mask zeroed)."""
    return [s.traj_id for s in scored.train if any(s.loss_mask)]


def test_void_turn_filter_drops_only_replies_without_an_action():
    cfg = AlgoConfig(filter_incomplete=True, group_filter_ratio=1.0, invalid_penalty=0.1)
    trajectories = [
        _trajectory(0, 1.0, valid=True, parsed=True),
        _trajectory(1, 0.0, valid=False, parsed=True),  # an action the env rejected
        _trajectory(2, 0.0, valid=False, parsed=False),  # no action at all: a void turn
    ]
    scored = score_batch(trajectories, cfg, toolcall_weight=0.0)
    assert trained(scored) == [0, 1]
    assert [s.traj_id for s in scored.train] == [0, 1, 2]  # the void turn is masked, not dropped
    assert scored.metrics["batch/masked_samples"] == 1.0
    rejected = scored.train[1]
    assert rejected.reward < 0 and rejected.advantage < 0  # the penalty reaches the update
    assert scored.metrics["filter/incomplete"] == 1.0


@pytest.mark.parametrize("keep_negative", [False, True])
def test_keep_negative_trains_void_turns_only_when_blamed(keep_negative):
    cfg = AlgoConfig(
        filter_incomplete=True,
        filter_keep_negative=keep_negative,
        group_filter_ratio=1.0,
        invalid_penalty=0.1,
    )
    trajectories = [
        _trajectory(0, 1.0, valid=False, parsed=False),  # void turn in a win: advantage > 0
        _trajectory(1, 0.0, valid=True, parsed=True),
        _trajectory(2, 0.0, valid=False, parsed=False),  # void turn in a loss: advantage < 0
    ]
    scored = score_batch(trajectories, cfg, toolcall_weight=0.0)
    won_void, _, lost_void = scored.samples
    assert won_void.advantage > 0 > lost_void.advantage
    assert trained(scored) == ([1, 2] if keep_negative else [1])
    assert scored.metrics["filter/incomplete"] == 2.0  # the filter fired either way
    assert scored.metrics["filter/kept_negative"] == float(keep_negative)


def test_kept_negative_counts_only_samples_the_group_filter_keeps():
    cfg = AlgoConfig(filter_incomplete=True, filter_keep_negative=True, group_filter_ratio=0.5)
    trajectories = [
        _trajectory(0, 1.0, valid=True, parsed=True),
        _trajectory(1, 0.0, valid=False, parsed=False),  # rescued, in the kept group
        _trajectory(2, 0.0, valid=True, parsed=True, group_id=1),
        _trajectory(3, 0.0, valid=False, parsed=False, group_id=1),  # rescued, group dropped
    ]
    scored = score_batch(trajectories, cfg, toolcall_weight=0.0)
    assert [s.traj_id for s in scored.train] == [0, 1]  # the group filter drops group 1 whole
    assert scored.samples[3].advantage < 0
    assert scored.metrics["filter/kept_negative"] == 1.0


def test_baselines_are_the_kept_groups_or_all():
    cfg = AlgoConfig(group_filter_ratio=0.5)
    trajectories = [
        _trajectory(0, 1.0, valid=True, parsed=True),
        _trajectory(1, 0.0, valid=True, parsed=True),  # group 0: std > 0, kept
        _trajectory(2, 3.0, valid=True, parsed=True, group_id=1),
        _trajectory(3, 3.0, valid=True, parsed=True, group_id=1),  # group 1: std 0, dropped
    ]
    scored = score_batch(trajectories, cfg, toolcall_weight=0.0)
    assert scored.group_kept == [True, False]
    assert scored.baselines(kept_only=True) == ([0.5], [pytest.approx(0.7071, abs=1e-4)])
    assert scored.baselines(kept_only=False)[0] == [0.5, 3.0]
