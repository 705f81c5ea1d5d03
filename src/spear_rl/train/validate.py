"""Checks a config before anything heavy starts: every named choice exists, every number is sane."""

from __future__ import annotations

from spear_rl.algos.advantages import ADV_ESTIMATORS
from spear_rl.algos.aggregation import AGG_MODES
from spear_rl.algos.losses import POLICY_LOSSES
from spear_rl.train.config import Config, ConfigError

CHOICES = {
    "algo.group_stats": ("per_trajectory", "per_sample"),
    "algo.gigpo_episode_norm": ("std", "mean"),
    "algo.gigpo_step_norm": ("std", "mean"),
    "algo.group_filter_mode": ("std", "std_rev"),
    "algo.toolcall_schedule": ("none", "constant", "cosine"),
    "algo.toolcall_bonus_mode": ("linear", "flat_if_correct"),
    "replay.recalibration": ("p50", "decay"),
    "replay.sampling": ("uniform", "priority"),
    "replay.trigger": ("continuous", "reference"),
    "replay.update": ("joint", "separate"),
    "rollout.layout": ("per_turn", "whole"),
}

POSITIVE = (
    "train.steps",
    "train.batch_tasks",
    "train.ppo_epochs",
    "train.micro_batch_size",
    "train.eval_episodes",
    "rollout.group_size",
    "rollout.max_turns",
    "rollout.max_response_tokens",
    "replay.buffer_size",
    "replay.tolerate_steps",
    "replay.baseline_history",
    "replay.replay_ratio",
)
NON_NEGATIVE = (
    "train.lr",
    "train.weight_decay",
    "train.warmup_steps",
    "train.mini_batch_size",
    "train.eval_every",
    "train.checkpoint_every",
    "algo.invalid_penalty",
    "algo.entropy_coef",
    "algo.kl_coef",
    "algo.toolcall_steps",
    "replay.coef",
    "replay.warmup_steps",
    "replay.replay_batch",
    "sft.episodes",
)


def get(cfg: Config, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def validate_config(cfg: Config) -> None:
    if cfg.algo.adv_estimator not in ADV_ESTIMATORS:
        raise ConfigError(
            f"algo.adv_estimator {cfg.algo.adv_estimator!r} unknown; known: {', '.join(ADV_ESTIMATORS.names())}"
        )
    if cfg.algo.loss not in POLICY_LOSSES:
        raise ConfigError(
            f"algo.loss {cfg.algo.loss!r} unknown; known: {', '.join(POLICY_LOSSES.names())}"
        )
    if cfg.algo.loss_agg not in AGG_MODES:
        raise ConfigError(
            f"algo.loss_agg {cfg.algo.loss_agg!r} unknown; known: {', '.join(AGG_MODES)}"
        )
    for key, options in CHOICES.items():
        if get(cfg, key) not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}; got {get(cfg, key)!r}")
    for key in POSITIVE:
        if get(cfg, key) <= 0:
            raise ConfigError(f"{key} must be > 0; got {get(cfg, key)!r}")
    for key in NON_NEGATIVE:
        if get(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0; got {get(cfg, key)!r}")
    if not 0 < cfg.algo.group_filter_ratio <= 1:
        raise ConfigError(
            f"algo.group_filter_ratio must be in (0, 1]; got {cfg.algo.group_filter_ratio}"
        )
    if not 0 <= cfg.algo.clip_low < 1 or cfg.algo.clip_high < 0:
        raise ConfigError("algo.clip_low must be in [0, 1) and algo.clip_high >= 0")
    if cfg.rollout.temperature <= 0:
        raise ConfigError("rollout.temperature must be > 0 (training needs sampling log-probs)")
    if cfg.algo.adv_estimator == "gigpo" and cfg.rollout.layout != "per_turn":
        raise ConfigError(
            "algo.adv_estimator=gigpo needs rollout.layout=per_turn (step groups are turns)"
        )
    if not 0 <= cfg.sft.detour_rate < 1:
        raise ConfigError(f"sft.detour_rate must be in [0, 1); got {cfg.sft.detour_rate}")
