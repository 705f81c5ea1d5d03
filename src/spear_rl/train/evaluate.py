"""Held-out evaluation: success rate of the policy on seeds the training never draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from spear_rl.envs.base import EVAL_SEED_OFFSET, Env
from spear_rl.rollout.config import RolloutConfig
from spear_rl.rollout.engines.base import GenerationEngine
from spear_rl.rollout.runner import run_rollout
from spear_rl.rollout.sample import Trajectory
from spear_rl.train.config import Config
from spear_rl.train.distributed import all_gather_concat, my_share, rank_seed, world_rank
from spear_rl.train.runtime import derive_seed


def eval_seeds(episodes: int) -> list[int]:
    return [EVAL_SEED_OFFSET + i for i in range(episodes)]


def evaluate_policy(
    model,
    tokenizer,
    env_factory: Callable[[], Env],
    rollout_cfg: RolloutConfig,
    episodes: int,
    seed: int,
    engine: GenerationEngine | None = None,
) -> tuple[dict[str, float], list[Trajectory]]:
    """One episode on each of the first `episodes` held-out task seeds, sampled as in training
    (by `engine`; None = the hf engine on `model`)."""
    was_training = model.training
    model.eval()
    cfg = dataclasses.replace(rollout_cfg, group_size=1)
    rank, _ = world_rank()  # several ranks: each plays its share of the seeds, all see every result
    result = run_rollout(
        model,
        tokenizer,
        env_factory,
        my_share(eval_seeds(episodes)),
        cfg,
        seed=rank_seed(seed, rank),
        engine=engine,
    )
    if was_training:
        model.train()
    trajs = all_gather_concat(result.trajectories)
    n = max(1, len(trajs))
    metrics = {
        "eval/success_rate": sum(t.won for t in trajs) / n,
        "eval/episode_reward": sum(t.episode_reward for t in trajs) / n,
        "eval/turns": sum(len(t.turns) for t in trajs) / n,
        "eval/invalid_rate": sum(t.invalid_turns for t in trajs)
        / max(1, sum(len(t.turns) for t in trajs)),
        "eval/seconds": sum(result.timings.values()),
    }
    return metrics, trajs


def render_trajectory(traj: Trajectory) -> str:
    lines = [
        f"## task seed {traj.task_seed}: {'WON' if traj.won else 'lost'}, "
        f"env reward {traj.episode_reward:+.2f}, {len(traj.turns)} turns, "
        f"{traj.invalid_turns} invalid",
        "",
        f"**Task:** {traj.task}",
        "",
    ]
    for i, turn in enumerate(traj.turns, 1):
        lines += [
            f"### turn {i}",
            "```text",
            turn.observation.strip(),
            "```",
            f"model: `{turn.response[:400]!r}`",
            f"action: `{turn.action}`  valid: {turn.valid}  reward: {turn.reward:+.2f}",
            "",
        ]
    return "\n".join(lines)


def write_trajectories(path: Path, trajectories: list[Trajectory], limit: int) -> None:
    """Write a few rendered trajectories (won ones first) for a person to read."""
    if limit <= 0:
        return
    chosen = sorted(trajectories, key=lambda t: not t.won)[:limit]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(render_trajectory(t) for t in chosen), encoding="utf-8")


def evaluate_at_step(
    model,
    tokenizer,
    env_factory,
    cfg: Config,
    run_dir: Path,
    step: int,
    engine: GenerationEngine | None = None,
) -> dict[str, float]:
    """Evaluate at a training step (0 = before training) and write its rendered trajectories."""
    metrics, trajectories = evaluate_policy(
        model,
        tokenizer,
        env_factory,
        cfg.rollout,
        cfg.train.eval_episodes,
        seed=derive_seed(cfg.train.seed, step, "eval"),
        engine=engine,
    )
    if world_rank()[0] == 0:
        write_trajectories(
            run_dir / "samples" / f"eval_step_{step:06d}.md",
            trajectories,
            cfg.log.sample_trajectories,
        )
    return metrics


def is_eval_step(cfg: Config, step: int) -> bool:
    """Steps after which the policy is evaluated (step 0, before training, always is)."""
    return (
        bool(cfg.train.eval_every and step % cfg.train.eval_every == 0) or step == cfg.train.steps
    )
