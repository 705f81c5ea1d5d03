"""How episodes are rolled out: the `rollout` group of the run config."""

from __future__ import annotations

from dataclasses import dataclass

LAYOUTS = ("per_turn", "whole")


@dataclass
class RolloutConfig:
    group_size: int = 8  # episodes per task seed (the GRPO group)
    max_turns: int = 15
    max_response_tokens: int = 64  # per turn
    max_prompt_tokens: int = 1024  # per_turn: one prompt; whole: the whole conversation so far
    history_turns: int = 2  # per_turn: (observation, action) pairs shown before the current one
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    layout: str = "per_turn"  # or "whole"
    show_admissible: bool = True  # list the env's admissible actions in the prompt
    generation_batch_size: int = 64  # max sequences per forward during generation
    env_timeout_s: float = 30.0  # per reset/step call; <= 0 calls the env directly (no thread)


def check_rollout_config(cfg: RolloutConfig) -> None:
    """Raise ValueError naming the key for a value the rollout cannot run with."""
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"unknown rollout.layout {cfg.layout!r}; known: {', '.join(LAYOUTS)}")
    for name in ("group_size", "max_turns", "max_response_tokens", "generation_batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"rollout.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.history_turns < 0:
        raise ValueError(f"rollout.history_turns must be >= 0, got {cfg.history_turns}")
    if cfg.max_prompt_tokens < 16:
        raise ValueError(f"rollout.max_prompt_tokens must be >= 16, got {cfg.max_prompt_tokens}")
    if not 0.0 < cfg.top_p <= 1.0:
        raise ValueError(f"rollout.top_p must be in (0, 1], got {cfg.top_p}")
    if cfg.temperature < 0:
        raise ValueError(f"rollout.temperature must be >= 0, got {cfg.temperature}")
