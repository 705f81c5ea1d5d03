"""One rollout with the `hf` engine, timed, for the decoding benchmarks (kv_reuse, drop_stopped).

A fresh engine per rollout, so no KV cache or batch state leaks from one measured setting into the
next. Generated tokens per second is the number to compare: settings that sample differently
(dropped rows, reused KV) still generate tokens from the same distribution.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from spear_rl.envs.base import Env
from spear_rl.rollout.config import RolloutConfig
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.runner import RolloutResult, run_rollout


def timed_rollout(
    model,
    tokenizer,
    env_factory: Callable[[], Env],
    seeds: Sequence[int],
    rollout_cfg: RolloutConfig,
    seed: int,
) -> tuple[dict, RolloutResult]:
    """Roll out `seeds` once; returns (timings and token counts, the rollout's result)."""
    engine = HFEngine(
        model, tokenizer.pad_token_id, rollout_cfg.generation_batch_size, rollout_cfg.kv_reuse
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_rollout(
        model, tokenizer, env_factory, seeds, rollout_cfg, seed=seed, engine=engine
    )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    turns = sum(len(t.turns) for t in result.trajectories)
    generated = result.stats["response_len_mean"] * turns
    generate_s = result.timings["generate"]
    return {
        "rollout_s": wall,
        "rollout_cpu_s": cpu,  # all threads' CPU time: steadier than wall time on a busy machine
        "generate_s": generate_s,
        "generated_tokens": generated,
        "tokens_per_s": generated / generate_s,
        "success": result.stats.get("success_rate"),
    }, result
