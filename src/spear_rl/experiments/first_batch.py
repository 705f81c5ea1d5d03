"""A recipe's warm-started policy and its first training batch, for the benchmarks that measure one
update on real data (update_probe, rl_precision).

The policy is built as `spear train` builds it (SFT warm start, from the cache when it has one),
and step 1's tasks are rolled out and scored as the trainer would, with no tool-call reward.
"""

from __future__ import annotations

from spear_rl.rollout.runner import run_rollout
from spear_rl.rollout.sample import Sample
from spear_rl.train.config import Config
from spear_rl.train.runtime import make_env_factory, set_threads, task_seeds
from spear_rl.train.scoring import score_batch
from spear_rl.train.warm_start import initial_policy


def first_batch(cfg: Config) -> tuple:
    """(model in eval mode, tokenizer, env factory, step 1's trainable samples, its episodes)."""
    set_threads(cfg)
    env_factory = make_env_factory(cfg)
    model, tokenizer, _ = initial_policy(cfg, env_factory)
    model.eval()
    rollout = run_rollout(
        model, tokenizer, env_factory, task_seeds(cfg, 1), cfg.rollout, seed=cfg.train.seed
    )
    samples: list[Sample] = score_batch(rollout.trajectories, cfg.algo, 0.0).train
    if not samples:
        raise SystemExit("the batch has no trainable samples (all filtered); try another seed")
    return model, tokenizer, env_factory, samples, rollout.trajectories
