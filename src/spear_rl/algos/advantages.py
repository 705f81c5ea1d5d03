"""Advantage estimators (spec §2): one scalar per training sample, picked by name.

`grpo`, `dr_grpo` and `rloo` compare each sample's reward with the other rollouts of its group;
`gigpo` adds a step-level term from turns that acted on an identical observation. Everything is a
pure function of tensors; statistics are computed in float64 and returned in the rewards' dtype.

Group statistics are over trajectories by default (`group_stats="per_trajectory"`): a trajectory's
score is the mean of its samples' rewards, so a long episode with many per-turn samples counts once.
`group_stats="per_sample"` reproduces the reference code, which averages over samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from spear_rl.fields import Settings, setting
from spear_rl.registry import Registry

AdvantageFn = Callable[["AdvantageInput", "AdvantageConfig"], Tensor]

ADV_ESTIMATORS: Registry[AdvantageFn] = Registry("advantage estimator")

GROUP_STATS_MODES = ("per_trajectory", "per_sample")
GIGPO_EPISODE_NORMS = ("std", "mean")
GIGPO_STEP_NORMS = ("mean", "std")


def register_adv_est(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator: `@register_adv_est("grpo")` makes the function selectable by that name."""
    return ADV_ESTIMATORS.register(name)


@dataclass
class AdvantageConfig(Settings):
    """Advantage settings: the `algo` section's advantage keys (spec §2)."""

    section = "algo"

    adv_estimator: str = setting(
        "dr_grpo",
        "advantage estimator (grpo: std-normalised; dr_grpo: R - mean)",
        choices=ADV_ESTIMATORS,
    )
    group_stats: str = setting(
        "per_trajectory",
        "group mean/std over trajectories, or over per-turn samples (per_sample, the reference)",
        choices=GROUP_STATS_MODES,
    )
    eps: float = setting(1e-6, "added to the std before dividing by it", gt=0)
    gigpo_gamma: float = setting(0.95, "discount of GiGPO's step-level returns", ge=0, le=1)
    gigpo_step_weight: float = setting(1.0, "w_step in A = A_episode + w_step * A_step")
    gigpo_episode_norm: str = setting(
        "mean",
        "GiGPO's episode part: std (grpo-style) or mean (dr_grpo-style)",
        choices=GIGPO_EPISODE_NORMS,
    )
    gigpo_step_norm: str = setting(
        "mean",
        "GiGPO's step part: mean (G - mean) or std ((G - mean) / (std + eps))",
        choices=GIGPO_STEP_NORMS,
    )


@dataclass
class AdvantageInput:
    rewards: Tensor  # [N] per-sample reward = R_tau + that sample's invalid penalty
    group_ids: Tensor  # [N] long
    traj_ids: Tensor  # [N] long, unique across the batch
    turn_index: Tensor | None = None  # [N] long, gigpo only
    step_rewards: Tensor | None = None  # [N] env reward of that turn, gigpo only
    anchor_ids: Tensor | None = None  # [N] long id of the anchor observation (hash), gigpo only


def compute_advantages(name: str, inp: AdvantageInput, cfg: AdvantageConfig) -> Tensor:
    """Advantages [N] from the estimator registered as `name` (unknown names list the known)."""
    return ADV_ESTIMATORS.get(name)(inp, cfg)


def group_reward_stats(
    rewards: Tensor,
    group_ids: Tensor,
    traj_ids: Tensor,
    group_stats: str = "per_trajectory",
) -> tuple[Tensor, Tensor, Tensor]:
    """(unique group ids, per-group mean, per-group unbiased std), groups in ascending id order.

    A group with a single score (one trajectory, or one sample under `per_sample`) has std 0: its
    spread is undefined, and 0 ranks it as the least informative group.
    """
    _check_choice("group_stats", group_stats, GROUP_STATS_MODES)
    groups = _GroupLayout(rewards, group_ids, traj_ids)
    mean, std = groups.mean_std(group_stats)
    return groups.unique_groups, mean.to(groups.out_dtype), std.to(groups.out_dtype)


def discounted_returns(
    step_rewards: Tensor, traj_ids: Tensor, turn_index: Tensor, gamma: float
) -> Tensor:
    """G_k = sum_{j>=k} gamma^(j-k) r_j over each trajectory's turns taken in turn order.

    Samples may come in any order; turn indices must be distinct within a trajectory.
    """
    rewards = _as_float64_vector("step_rewards", step_rewards)
    n = rewards.numel()
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("step_rewards contain NaN or inf; fix the environment's reward")
    traj_ids = _as_long_vector("traj_ids", traj_ids, n)
    turn_index = _as_long_vector("turn_index", turn_index, n)
    if n == 0:
        return rewards.to(_float_dtype(step_rewards))
    _, traj_of = torch.unique(traj_ids, return_inverse=True)
    num_trajs = int(traj_of.max()) + 1
    # Order samples by (trajectory, turn) with two stable sorts.
    by_turn = torch.argsort(turn_index, stable=True)
    order = by_turn[torch.argsort(traj_of[by_turn], stable=True)]
    sorted_traj, sorted_turn = traj_of[order], turn_index[order]
    same = (sorted_traj[1:] == sorted_traj[:-1]) & (sorted_turn[1:] == sorted_turn[:-1])
    if bool(same.any()):
        raise ValueError("turn_index repeats within a trajectory; each turn needs its own index")
    counts = torch.bincount(traj_of, minlength=num_trajs)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(n, device=rewards.device) - starts[sorted_traj]
    longest = int(counts.max())
    # Dense [trajectories, turns + 1] table; the extra zero column ends every backward scan.
    table = torch.zeros(num_trajs, longest + 1, dtype=torch.float64, device=rewards.device)
    table[sorted_traj, position] = rewards[order]
    for k in range(longest - 1, -1, -1):
        table[:, k] += gamma * table[:, k + 1]
    returns = torch.empty_like(rewards)
    returns[order] = table[sorted_traj, position]
    return returns.to(_float_dtype(step_rewards))


# --- estimators -------------------------------------------------------------------------------


@register_adv_est("grpo")
def grpo_advantages(inp: AdvantageInput, cfg: AdvantageConfig) -> Tensor:
    """A = (r - mean_g) / (std_g + eps); a group of one trajectory gets 0; std_g = 0 -> r - mean_g."""
    return _centred(inp, cfg, divide_by_std=True)


@register_adv_est("dr_grpo")
def dr_grpo_advantages(inp: AdvantageInput, cfg: AdvantageConfig) -> Tensor:
    """A = r - mean_g (Dr.GRPO: no std division); a group of one trajectory gets 0."""
    return _centred(inp, cfg, divide_by_std=False)


@register_adv_est("rloo")
def rloo_advantages(inp: AdvantageInput, cfg: AdvantageConfig) -> Tensor:
    """A = r - mean of the *other* trajectories' scores in the group (or other samples, per_sample)."""
    groups = _GroupLayout(inp.rewards, inp.group_ids, inp.traj_ids)
    g = groups.group_of_sample
    if cfg.group_stats == "per_trajectory":
        totals = _segment_sum(groups.traj_scores, groups.group_of_traj, groups.num_groups)
        own = groups.traj_scores[groups.traj_of_sample]
        others = groups.trajs_per_group[g] - 1
    else:
        totals = _segment_sum(groups.rewards, g, groups.num_groups)
        own = groups.rewards
        others = groups.samples_per_group[g] - 1
    baseline = (totals[g] - own) / others.clamp(min=1)
    advantages = groups.rewards - baseline
    return groups.zero_lone_groups(advantages).to(groups.out_dtype)


@register_adv_est("gigpo")
def gigpo_advantages(inp: AdvantageInput, cfg: AdvantageConfig) -> Tensor:
    """A = A_episode + w_step * A_step (GiGPO).

    A_episode is grpo (`gigpo_episode_norm="std"`) or dr_grpo (`"mean"`). A_step compares the
    discounted return of turns that acted on an identical anchor observation within one group;
    a turn whose anchor is unique in its group gets A_step = 0.
    """
    missing = [
        name for name in ("turn_index", "step_rewards", "anchor_ids") if getattr(inp, name) is None
    ]
    if missing:
        raise ValueError(f"gigpo needs AdvantageInput fields {missing}; they are None")
    episode = _centred(inp, cfg, divide_by_std=cfg.gigpo_episode_norm == "std")
    n = episode.numel()
    if n == 0:
        return episode
    returns = discounted_returns(
        inp.step_rewards, inp.traj_ids, inp.turn_index, cfg.gigpo_gamma
    ).to(torch.float64)
    group_ids = _as_long_vector("group_ids", inp.group_ids, n)
    anchor_ids = _as_long_vector("anchor_ids", inp.anchor_ids, n)
    _, step_group = torch.unique(
        torch.stack([group_ids, anchor_ids], dim=1), dim=0, return_inverse=True
    )
    num_step_groups = int(step_group.max()) + 1
    count, mean, std = _segment_stats(returns, step_group, num_step_groups)
    step = returns - mean[step_group]
    if cfg.gigpo_step_norm == "std":
        step = step / (std[step_group] + cfg.eps)
    step = torch.where(count[step_group] > 1, step, torch.zeros_like(step))
    return (episode.to(torch.float64) + cfg.gigpo_step_weight * step).to(episode.dtype)


# --- shared machinery -------------------------------------------------------------------------


def _centred(inp: AdvantageInput, cfg: AdvantageConfig, divide_by_std: bool) -> Tensor:
    groups = _GroupLayout(inp.rewards, inp.group_ids, inp.traj_ids)
    mean, std = groups.mean_std(cfg.group_stats)
    g = groups.group_of_sample
    advantages = groups.rewards - mean[g]
    if divide_by_std:
        # A group whose trajectory scores are all equal has std 0; its samples can still differ by
        # per-turn penalties, and dividing those residuals by eps would blow them up to ~1e5.
        # Such a group keeps the unscaled residual (the dr_grpo value) instead.
        scale = torch.where(std[g] > 0, std[g] + cfg.eps, torch.ones_like(std[g]))
        advantages = advantages / scale
    return groups.zero_lone_groups(advantages).to(groups.out_dtype)


class _GroupLayout:
    """Dense indices for groups and trajectories plus per-trajectory scores (all float64)."""

    def __init__(self, rewards: Tensor, group_ids: Tensor, traj_ids: Tensor) -> None:
        self.out_dtype = _float_dtype(rewards)
        self.rewards = _as_float64_vector("rewards", rewards)
        n = self.rewards.numel()
        if not bool(torch.isfinite(self.rewards).all()):
            raise ValueError("rewards contain NaN or inf; fix the reward function before training")
        group_ids = _as_long_vector("group_ids", group_ids, n)
        traj_ids = _as_long_vector("traj_ids", traj_ids, n)
        self.unique_groups, self.group_of_sample = torch.unique(group_ids, return_inverse=True)
        _, self.traj_of_sample = torch.unique(traj_ids, return_inverse=True)
        self.num_groups = self.unique_groups.numel()
        num_trajs = int(self.traj_of_sample.max()) + 1 if n else 0
        device = self.rewards.device
        self.group_of_traj = torch.zeros(num_trajs, dtype=torch.long, device=device)
        self.group_of_traj[self.traj_of_sample] = self.group_of_sample
        if bool((self.group_of_traj[self.traj_of_sample] != self.group_of_sample).any()):
            raise ValueError(
                "a trajectory's samples carry different group_ids; traj_ids must be unique"
            )
        samples_per_traj = torch.bincount(self.traj_of_sample, minlength=num_trajs)
        self.traj_scores = _segment_sum(self.rewards, self.traj_of_sample, num_trajs) / (
            samples_per_traj.to(torch.float64)
        )
        self.trajs_per_group = torch.bincount(self.group_of_traj, minlength=self.num_groups)
        self.samples_per_group = torch.bincount(self.group_of_sample, minlength=self.num_groups)

    def mean_std(self, group_stats: str) -> tuple[Tensor, Tensor]:
        _check_choice("group_stats", group_stats, GROUP_STATS_MODES)
        if group_stats == "per_trajectory":
            _, mean, std = _segment_stats(self.traj_scores, self.group_of_traj, self.num_groups)
        else:
            _, mean, std = _segment_stats(self.rewards, self.group_of_sample, self.num_groups)
        return mean, std

    def zero_lone_groups(self, advantages: Tensor) -> Tensor:
        """A group with a single trajectory has nothing to compare with: advantage 0."""
        alone = self.trajs_per_group[self.group_of_sample] < 2
        return torch.where(alone, torch.zeros_like(advantages), advantages)


def _segment_sum(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    out = torch.zeros(num_segments, dtype=values.dtype, device=values.device)
    return out.index_add_(0, segment, values)


def _segment_stats(values: Tensor, segment: Tensor, num_segments: int) -> tuple[Tensor, ...]:
    """(count, mean, unbiased std) per segment; std is 0 where a segment has fewer than 2 values."""
    count = torch.bincount(segment, minlength=num_segments)
    count_f = count.to(values.dtype)
    mean = _segment_sum(values, segment, num_segments) / count_f.clamp(min=1)
    squares = _segment_sum((values - mean[segment]) ** 2, segment, num_segments)
    std = torch.sqrt(squares / (count_f - 1).clamp(min=1))
    std = torch.where(count > 1, std, torch.zeros_like(std))
    return count, mean, std


def _as_float64_vector(name: str, x: Tensor) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor [N], got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def _as_long_vector(name: str, x: Tensor, n: int) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 1 or x.numel() != n:
        raise ValueError(f"{name} must have shape [{n}] like rewards, got {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex():
        raise ValueError(f"{name} must hold integer ids, got dtype {x.dtype}")
    return x.to(torch.long)


def _float_dtype(x: Tensor) -> torch.dtype:
    x = torch.as_tensor(x)
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
