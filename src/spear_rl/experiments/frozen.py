"""The frozen control: the warm-started policy, never trained, evaluated as a run would evaluate it.

A training run evaluates at steps 0, eval_every, ..., steps, each step with its own sampling seed.
Evaluating the untrained policy at the same steps with the same seeds (common random numbers) shows
how far such a curve moves by sampling alone, so a learning table can say whether a method did
better than not learning at all. It costs the evaluations only: no rollouts, no updates.
"""

from __future__ import annotations

import dataclasses
import time

from spear_rl.train.config import Config, validate_config
from spear_rl.train.evaluate import evaluate_at_step, is_eval_step
from spear_rl.train.metrics import MetricsLogger, log_sft_stats
from spear_rl.train.rollout_engine import start_engine
from spear_rl.train.run_dir import TrainResult, make_run_dir, write_result
from spear_rl.train.runtime import make_env_factory, pick_device, set_threads
from spear_rl.train.warm_start import initial_policy

FROZEN = "frozen"  # the preset name `spear compare` and benchmarks/learning.py answer with this


def run_frozen(cfg: Config, echo=print) -> TrainResult:
    """Write a run folder (config, metrics.jsonl, samples, result.json) of evaluations only."""
    t_start = time.time()
    cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, preset=FROZEN))
    validate_config(cfg)
    set_threads(cfg)
    run_dir = make_run_dir(cfg)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    echo(f"run folder: {run_dir} (frozen control: evaluations of the warm start only)")
    env_factory = make_env_factory(cfg)
    model, tokenizer, sft_stats = initial_policy(cfg, env_factory, echo)
    model.to(pick_device(cfg.train.device))
    # the engine the runs sample with (vllm's sampler draws differently from ours)
    engine, _ = start_engine(cfg, model, tokenizer, env_factory, echo)
    logger = MetricsLogger(run_dir, cfg.log, cfg.to_dict(), resume=False)
    if sft_stats:
        log_sft_stats(logger, sft_stats)
    success = []
    try:
        for step in [0] + [s for s in range(1, cfg.train.steps + 1) if is_eval_step(cfg, s)]:
            metrics = evaluate_at_step(model, tokenizer, env_factory, cfg, run_dir, step, engine)
            logger.log(step, metrics)
            success.append(metrics["eval/success_rate"])
            echo(f"  step {step}: held-out success {success[-1]:.3f}")
    finally:
        logger.close()
        engine.close()
    result = TrainResult(
        run_dir,
        success[0],
        success[-1],
        time.time() - t_start,
        cfg.train.steps,
        cfg.train.eval_episodes,
    )
    write_result(result)
    return result
