"""The RL trainer: one loop, readable top to bottom (spec §7).

    rollout -> rewards, filters, advantages, group filter -> update (on-policy + replay term)
            -> replay buffer maintenance -> log -> evaluate / checkpoint

Everything it calls is a named function elsewhere; this file only wires them in order.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from spear_rl.algos.replay import ReplayBuffer, ReplayItem
from spear_rl.algos.schedules import replay_coefficient, toolcall_weight
from spear_rl.envs.base import EVAL_SEED_OFFSET, make_env
from spear_rl.rollout.runner import run_rollout
from spear_rl.train.checkpoint import (
    latest_checkpoint,
    load_state,
    restore_rng_states,
    save_checkpoint,
)
from spear_rl.train.config import Config, config_from_dict, deep_merge
from spear_rl.train.evaluate import evaluate_policy, write_trajectories
from spear_rl.train.metrics import MetricsLogger, Progress
from spear_rl.train.scoring import ScoredBatch, score_batch
from spear_rl.train.update import LossSpec, UpdateSettings, policy_update
from spear_rl.train.config import validate_config
from spear_rl.train.warm_start import build_policy, initial_policy


@dataclass
class TrainResult:
    run_dir: Path
    success_before: float
    success_after: float
    wall_seconds: float
    steps: int


def train(
    cfg: Config | None = None,
    resume: str | Path | None = None,
    resume_overrides: dict[str, Any] | None = None,
    echo=print,
) -> TrainResult:
    """Run a training run, or resume one (its saved config, plus e.g. a larger `train.steps`)."""
    t_start = time.time()
    if resume is not None:
        run_dir = Path(resume)
        cfg = load_run_config(run_dir, resume_overrides)
    assert cfg is not None
    validate_config(cfg)
    set_threads(cfg)
    run_dir = run_dir if resume is not None else make_run_dir(cfg)
    checkpoint = latest_checkpoint(run_dir) if resume is not None else None
    if resume is not None and checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint to resume from")
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    echo(f"run folder: {run_dir}")
    device = pick_device(cfg.train.device)
    env_factory = make_env_factory(cfg)

    # ---- policy: fresh + SFT warm start (or its cached copy), or from the checkpoint ----------------
    logger = MetricsLogger(run_dir, cfg.log, cfg.to_dict(), resume=checkpoint is not None)
    if checkpoint is None:
        model, tokenizer, sft_stats = initial_policy(cfg, env_factory, echo)
        if sft_stats:
            log_sft_stats(logger, sft_stats)
            echo(f"SFT done: {fmt_stats(sft_stats)}")
    else:
        model, tokenizer = build_policy(cfg, env_factory, checkpoint)
    model.to(device)

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.train.warmup_steps))
    replay = ReplayBuffer(cfg.replay, seed=cfg.train.seed, use_std=replay_uses_std(cfg))
    ref_model = frozen_copy(model) if cfg.algo.kl_coef > 0 else None
    settings = update_settings(cfg, tokenizer)
    start_step, success_before = 0, float("nan")
    if checkpoint is not None:
        state = load_state(checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        replay.load_state_dict(state["replay"])
        restore_rng_states(state["rng"])
        start_step, success_before = state["step"], state["success_before"]
        echo(f"resumed from {checkpoint} at step {start_step}")
    else:
        metrics = evaluate(model, tokenizer, env_factory, cfg, run_dir, step=0)
        success_before = metrics["eval/success_rate"]
        logger.log(0, metrics)
        echo(f"held-out success before RL: {success_before:.3f}")

    # ---- the loop ---------------------------------------------------------------------------------
    progress = Progress(cfg.train.steps, start_step, cfg.log.progress)
    for step in range(start_step + 1, cfg.train.steps + 1):
        t0 = time.time()
        toolcall_w = toolcall_weight(step, cfg.algo.toolcall_schedule, cfg.algo.toolcall_steps)
        replay_c = (
            replay_coefficient(step, cfg.replay.coef, cfg.replay.warmup_steps)
            if cfg.replay.enabled
            else 0.0
        )

        # 1. roll out batch_tasks x group_size episodes
        model.eval()
        rollout = run_rollout(
            model,
            tokenizer,
            env_factory,
            task_seeds(cfg, step),
            cfg.rollout,
            seed=derive_seed(cfg.train.seed, step, "rollout"),
        )
        # 2. rewards, response filters, advantages, group filter
        scored = score_batch(rollout.trajectories, cfg.algo, toolcall_w)
        # 3. update: on-policy mini-batches with the replay term
        t_update = time.time()
        generator = torch.Generator().manual_seed(derive_seed(cfg.train.seed, step, "update"))

        def draw_replay(n: int, _step: int = step) -> list:
            return [(item.payload, adv) for item, adv in replay.draw(n, _step)]

        update_metrics = policy_update(
            model,
            optimizer,
            scored.train,
            draw_replay if cfg.replay.enabled else None,
            replay_c,
            settings,
            generator,
            ref_model,
        )
        if update_metrics["actor/optimizer_steps"]:
            scheduler.step()  # warm-up counts optimiser steps; a step that trained nothing waits
        t_replay = time.time()
        # 4. replay buffer maintenance: evict stale, record baselines, admit this step's wins
        buffer_metrics = maintain_buffer(replay, scored, step, cfg)

        metrics = {
            **{f"rollout/{k}": v for k, v in rollout.stats.items()},
            **scored.metrics,
            **update_metrics,
            **buffer_metrics,
            "coef/toolcall_weight": toolcall_w,
            "coef/replay": replay_c,
            "lr": scheduler.get_last_lr()[0],
            "time/generate": rollout.timings.get("generate", 0.0),
            "time/env": rollout.timings.get("env", 0.0),
            "time/update": t_replay - t_update,
            "time/replay_maintenance": time.time() - t_replay,
        }
        # 5. evaluate and checkpoint
        if is_eval_step(cfg, step):
            metrics.update(evaluate(model, tokenizer, env_factory, cfg, run_dir, step))
        metrics["time/step"] = time.time() - t0
        logger.log(step, metrics)
        progress.update(step, metrics)
        if (
            cfg.train.checkpoint_every
            and step % cfg.train.checkpoint_every == 0
            or step == cfg.train.steps
        ):
            save_checkpoint(
                run_dir,
                step,
                model,
                tokenizer,
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "replay": replay.state_dict(),
                    "success_before": success_before,
                },
            )
    progress.close()
    logger.close()

    success_after = last_eval_success(run_dir)
    result = TrainResult(
        run_dir, success_before, success_after, time.time() - t_start, cfg.train.steps
    )
    write_result(result)
    return result


def log_sft_stats(logger: MetricsLogger, sft_stats: dict[str, Any]) -> None:
    logger.log(0, {f"sft/{k}": v for k, v in sft_stats.items() if isinstance(v, int | float)})


def write_result(result: TrainResult) -> None:
    (result.run_dir / "result.json").write_text(
        json.dumps(dataclasses.asdict(result), default=str, indent=2)
    )


# ---- the named pieces the loop calls ---------------------------------------------------------------
def maintain_buffer(
    replay: ReplayBuffer, scored: ScoredBatch, step: int, cfg: Config
) -> dict[str, float]:
    """Spec §6 after-update order: evict stale samples, record this step's baselines, admit wins."""
    if not cfg.replay.enabled:
        return {}
    evicted = replay.evict_stale(step)
    replay.record_baselines(scored.group_means, scored.group_stds)
    admitted = replay.admit(
        [
            ReplayItem(
                payload=slim(sample),
                reward=sample.reward,
                advantage=sample.advantage,
                step=step,
                group_id=step * 1_000_000 + sample.group_id,
                tool_calls=sample.tool_calls,
            )
            for sample in scored.train
            if any(sample.loss_mask)  # a filtered sample has no loss to imitate
        ]
    )
    stats = {f"replay/{k}": float(v) for k, v in replay.stats(step).items()}
    stats["replay/admitted"] = float(admitted)
    stats["replay/evicted"] = float(evicted)
    return stats


def slim(sample):
    """The buffer keeps what training needs, not the rendered text."""
    return dataclasses.replace(sample, anchor="", response_text="")


def evaluate(
    model, tokenizer, env_factory, cfg: Config, run_dir: Path, step: int
) -> dict[str, float]:
    metrics, trajectories = evaluate_policy(
        model,
        tokenizer,
        env_factory,
        cfg.rollout,
        cfg.train.eval_episodes,
        seed=derive_seed(cfg.train.seed, step, "eval"),
    )
    write_trajectories(
        run_dir / "samples" / f"eval_step_{step:06d}.md", trajectories, cfg.log.sample_trajectories
    )
    return metrics


def is_eval_step(cfg: Config, step: int) -> bool:
    """Steps after which the policy is evaluated (step 0, before training, always is)."""
    return (
        bool(cfg.train.eval_every and step % cfg.train.eval_every == 0) or step == cfg.train.steps
    )


def task_seeds(cfg: Config, step: int) -> list[int]:
    """This step's training task instances: a pure function of (seed, step), so resume is exact."""
    rng = np.random.default_rng([cfg.train.seed, step, 17])
    return rng.integers(0, EVAL_SEED_OFFSET, size=cfg.train.batch_tasks).tolist()


def derive_seed(seed: int, step: int, purpose: str) -> int:
    tag = sum(ord(c) * 31**i for i, c in enumerate(purpose)) % 2**31
    return int(np.random.SeedSequence([seed, step, tag]).generate_state(1)[0])


def update_settings(cfg: Config, tokenizer) -> UpdateSettings:
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
    )
    return UpdateSettings(
        on_policy=LossSpec(a.loss, params, a.loss_agg, t_norm, a.entropy_coef, a.kl_coef),
        replay=LossSpec(a.loss, replay_params, a.loss_agg, t_norm),  # no reference KL on replay
        mini_batch_size=cfg.train.mini_batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        ppo_epochs=cfg.train.ppo_epochs,
        replay_batch=r.replay_batch,
        replay_ratio=r.replay_ratio,
        replay_update=r.update,
        grad_clip=cfg.train.grad_clip,
        temperature=cfg.rollout.temperature,
        pad_token_id=tokenizer.pad_token_id,
    )


def replay_uses_std(cfg: Config) -> bool:
    """Recalibrated advantages divide by the history's P50 std when on-policy ones are std-normalised."""
    return cfg.algo.adv_estimator == "grpo" or (
        cfg.algo.adv_estimator == "gigpo" and cfg.algo.gigpo_episode_norm == "std"
    )


def make_env_factory(cfg: Config):
    make_env(
        cfg.env.name, **cfg.env.kwargs
    ).close()  # fail now, with the env's own message, on bad kwargs

    def factory():
        return make_env(cfg.env.name, **cfg.env.kwargs)

    return factory


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def warmup_lambda(warmup_steps: int):
    return lambda i: min(1.0, (i + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(cfg: Config) -> None:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)


def make_run_dir(cfg: Config) -> Path:
    name = cfg.train.run_name or (
        f"{cfg.env.name}-{cfg.log.preset or 'run'}-seed{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir = Path(cfg.train.output_dir) / name
    if (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: pick another train.run_name or use --resume"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_run_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run folder written by `spear train`"
        )
    data = yaml.safe_load(path.read_text())
    return config_from_dict(deep_merge(data, overrides) if overrides else data)


def last_eval_success(run_dir: Path) -> float:
    from spear_rl.train.metrics import read_metrics

    values = [r["eval/success_rate"] for r in read_metrics(run_dir) if "eval/success_rate" in r]
    return float(values[-1]) if values else float("nan")


def fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()
    )
