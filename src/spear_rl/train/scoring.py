"""Turn a rollout into a scored training batch: rewards, filters, advantages, group filter.

The algorithm pieces live in `spear_rl.algos`; this module only moves data between `Sample`s and
the tensors those pure functions take, in the order of spec §7 step 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import torch

from spear_rl.algos.advantages import AdvantageInput, compute_advantages, group_reward_stats
from spear_rl.algos.filters import apply_response_filters, select_groups
from spear_rl.algos.rewards import invalid_penalty, toolcall_bonus
from spear_rl.rollout.sample import Sample, Trajectory
from spear_rl.train.config import AlgoConfig


@dataclass
class ScoredBatch:
    """All samples with rewards and advantages; `train` is the subset the update trains on."""

    samples: list[Sample]
    train: list[Sample]
    group_means: list[float]
    group_stds: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    group_kept: list[bool] = field(default_factory=list)  # per group: the group-std filter kept it

    def baselines(self, kept_only: bool) -> tuple[list[float], list[float]]:
        """This step's per-group (means, stds) for the baseline history: every group, or only
        the groups the group-std filter kept (the reference)."""
        if not kept_only:
            return self.group_means, self.group_stds
        kept = [i for i, k in enumerate(self.group_kept) if k]
        return [self.group_means[i] for i in kept], [self.group_stds[i] for i in kept]


def assign_rewards(
    trajectories: list[Trajectory], cfg: AlgoConfig, toolcall_weight: float
) -> float:
    """R_tau = E_tau + b_tau on every sample, plus that sample's invalid-format penalty (spec §1).

    Returns the mean intrinsic bonus per trajectory.
    """
    bonuses = []
    for traj in trajectories:
        calls = traj.all_turns_count if cfg.toolcall_count_invalid else traj.tool_calls
        bonus = toolcall_bonus(
            calls, toolcall_weight, mode=cfg.toolcall_bonus_mode, correct=traj.won
        )
        bonuses.append(bonus)
        for sample in traj.samples:
            sample.reward = (
                traj.episode_reward
                + bonus
                + invalid_penalty(sample.num_invalid, cfg.invalid_penalty)
            )
    return sum(bonuses) / max(1, len(bonuses))


def anchor_id(text: str) -> int:
    """A stable 63-bit id of an anchor observation (python's hash() is salted per process)."""
    return (
        int.from_bytes(
            hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest(), "big"
        )
        >> 1
    )


def masked_out(sample: Sample) -> Sample:
    """A copy of `sample` with its whole loss mask zeroed (a filtered sample)."""
    return dataclasses.replace(sample, loss_mask=[0] * len(sample.loss_mask))


def score_batch(
    trajectories: list[Trajectory], cfg: AlgoConfig, toolcall_weight: float
) -> ScoredBatch:
    samples = [s for traj in trajectories for s in traj.samples]
    bonus_mean = assign_rewards(trajectories, cfg, toolcall_weight)

    # Response filters zero a sample's loss; its reward still counts in the group statistics.
    keep, filter_counts = apply_response_filters(
        [(s.truncated, s.parsed, s.response_ids, s.response_text) for s in samples],
        cfg,
    )

    inp = AdvantageInput(
        rewards=torch.tensor([s.reward for s in samples], dtype=torch.float64),
        group_ids=torch.tensor([s.group_id for s in samples], dtype=torch.long),
        traj_ids=torch.tensor([s.traj_id for s in samples], dtype=torch.long),
        turn_index=torch.tensor([s.turn for s in samples], dtype=torch.long),
        step_rewards=torch.tensor([s.step_reward for s in samples], dtype=torch.float64),
        anchor_ids=torch.tensor([anchor_id(s.anchor) for s in samples], dtype=torch.long),
    )
    advantages = compute_advantages(cfg.adv_estimator, inp, cfg)
    for sample, adv in zip(samples, advantages.tolist(), strict=True):
        sample.advantage = float(adv)

    group_ids, means, stds = group_reward_stats(
        inp.rewards, inp.group_ids, inp.traj_ids, cfg.group_stats
    )
    kept_groups = set(
        select_groups(
            group_ids.tolist(), stds.tolist(), cfg.group_filter_ratio, cfg.group_filter_mode
        )
    )
    # filter_keep_negative: a filtered reply the group ranks below average still gets its push
    # down; without it a policy can drift onto void replies that no loss ever penalises.
    rescued = [
        cfg.filter_keep_negative and not k and s.advantage < 0
        for s, k in zip(samples, keep, strict=True)
    ]
    keep = [k or r for k, r in zip(keep, rescued, strict=True)]
    # A filtered sample stays in the batch with its loss mask zeroed (spec §3.5): it adds no loss
    # but still counts in B, the sequence count the seq-mean-* aggregations divide by.
    train = [
        s if k else masked_out(s)
        for s, k in zip(samples, keep, strict=True)
        if s.group_id in kept_groups
    ]

    adv = advantages.float()
    metrics = {
        "reward/mean": float(inp.rewards.mean()) if samples else 0.0,
        "reward/toolcall_bonus_mean": bonus_mean,
        "adv/mean": float(adv.mean()) if samples else 0.0,
        "adv/abs_mean": float(adv.abs().mean()) if samples else 0.0,
        "adv/max": float(adv.max()) if samples else 0.0,
        "adv/min": float(adv.min()) if samples else 0.0,
        "filter/kept_frac": sum(keep) / max(1, len(keep)),
        "filter/kept_negative": float(
            sum(r and s.group_id in kept_groups for s, r in zip(samples, rescued, strict=True))
        ),
        "group_filter/kept_frac": len(kept_groups) / max(1, len(group_ids)),
        "batch/samples": float(len(samples)),
        "batch/train_samples": float(len(train)),
        "batch/masked_samples": float(sum(not any(s.loss_mask) for s in train)),
    }
    for name in ("overlong", "incomplete", "repetitive", "unreadable"):
        metrics[f"filter/{name}"] = float(filter_counts.get(name, 0))
    group_kept = [g in kept_groups for g in group_ids.tolist()]
    return ScoredBatch(samples, train, means.tolist(), stds.tolist(), metrics, group_kept)
