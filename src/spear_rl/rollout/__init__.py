"""The multi-turn agent loop: prompts, batched generation, token-exact samples and their batches."""

from spear_rl.rollout.batch import TokenBatch, collate_samples
from spear_rl.rollout.config import RolloutConfig
from spear_rl.rollout.generation import GenOutput, generate
from spear_rl.rollout.prompts import EpisodeRenderer, build_turn_prompt
from spear_rl.rollout.runner import RolloutResult, run_rollout
from spear_rl.rollout.sample import Sample, Trajectory, Turn

__all__ = [
    "EpisodeRenderer",
    "GenOutput",
    "RolloutConfig",
    "RolloutResult",
    "Sample",
    "TokenBatch",
    "Trajectory",
    "Turn",
    "build_turn_prompt",
    "collate_samples",
    "generate",
    "run_rollout",
]
