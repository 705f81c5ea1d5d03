"""The run config translated into what the algorithm pieces take: update settings, replay scale."""

from __future__ import annotations

import dataclasses

import torch

from spear_rl.train.config import Config
from spear_rl.train.precision import resolve_precision
from spear_rl.train.update import LossSpec, UpdateSettings


def update_settings(cfg: Config, tokenizer, device: torch.device | None = None) -> UpdateSettings:
    """`device`: where the update runs, for `train.precision: auto` (None: the CPU)."""
    a, r = cfg.algo, cfg.replay
    t_norm = a.loss_agg_t_norm or (
        cfg.rollout.max_response_tokens
        if cfg.rollout.layout == "per_turn"
        else cfg.rollout.max_response_tokens * cfg.rollout.max_turns
    )
    params = cfg.algo  # the algo section embeds the loss module's PolicyLossConfig
    replay_params = dataclasses.replace(
        params,
        clip_cov_ratio=r.clip_cov_ratio,
        clip_cov_lb=r.clip_cov_lb,
        clip_cov_ub=r.clip_cov_ub,
        kl_cov_ratio=r.kl_cov_ratio,
    )
    return UpdateSettings(
        on_policy=LossSpec(a.loss, params, a.loss_agg, t_norm, a.entropy_coef, a.kl_coef),
        # the replay term: its own clip_cov / kl_cov budget and entropy bonus, no reference KL
        replay=LossSpec(a.loss, replay_params, a.loss_agg, t_norm, r.entropy_coef),
        mini_batch_size=cfg.train.mini_batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        ppo_epochs=cfg.train.ppo_epochs,
        replay_batch=r.replay_batch,
        replay_ratio=r.replay_ratio,
        replay_update=r.update,
        grad_clip=cfg.train.grad_clip,
        temperature=cfg.rollout.temperature,
        pad_token_id=tokenizer.pad_token_id,
        precision=resolve_precision(cfg.train.precision, device or torch.device("cpu")),
    )


def replay_uses_std(cfg: Config) -> bool:
    """Recalibrated advantages divide by the history's P50 std when on-policy ones are std-normalised."""
    return cfg.algo.adv_estimator == "grpo" or (
        cfg.algo.adv_estimator == "gigpo" and cfg.algo.gigpo_episode_norm == "std"
    )
