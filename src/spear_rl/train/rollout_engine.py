"""The trainer's side of the generation engine: start it, keep it in step with the policy.

- `start_engine`: builds `rollout.engine` from the policy and checks it against the policy on a
  probe sequence (a real first prompt of the env, scored by both).
- `recompute_old_logprobs`: with an engine that has its own weights (vLLM, the hf engine's bf16
  copy) or an update in bf16 the recorded log-probs are not what the update computes; the update's
  `pi_old` must be the training model's (spec §4: the PPO ratio is 1 on fresh data), so they are
  recomputed in the update's arithmetic and the engine's kept as `behaviour_logprobs` for the
  optional TIS correction (`algo.tis_cap`). The fp32 `hf` engine records the training model's own.
- `sync_rollout_engine`: the one place where weights move, right after the update; the push
  is checked (names, vLLM's own load report, probe log-probs) and fails loudly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from spear_rl.rollout.batch import collate_samples
from spear_rl.rollout.engines import EngineSettings, GenerationEngine, make_engine
from spear_rl.rollout.engines.sync import check_engine_sync, sync_engine
from spear_rl.rollout.prompts import build_turn_prompt
from spear_rl.rollout.sample import Sample
from spear_rl.train.update import UpdateSettings, update_logprobs

PROBE_SEED = 0  # the probe is the first prompt of training task 0


def engine_settings(cfg) -> EngineSettings:
    r = cfg.rollout
    return EngineSettings(
        batch_size=r.generation_batch_size,
        max_model_len=r.max_prompt_tokens + r.max_response_tokens,
        seed=cfg.train.seed,
        gpu_memory_utilization=r.gpu_memory_utilization,
        sleep=r.vllm_sleep,
        kv_reuse=r.kv_reuse,
        precision=r.precision,
    )


def start_engine(
    cfg, model, tokenizer, env_factory: Callable, echo=print
) -> tuple[GenerationEngine, list[int]]:
    """(the engine, the probe it is checked on); a non-hf engine is checked before first use."""
    probe = sync_probe(tokenizer, env_factory, cfg.rollout.max_prompt_tokens)
    engine = make_engine(cfg.rollout.engine, model, tokenizer, engine_settings(cfg))
    if not engine.shares_weights:
        gap = check_engine_sync(engine, model, probe)
        echo(f"{engine.name} engine ready (probe log-prob gap {gap:.2g})")
    return engine, probe


def sync_probe(tokenizer, env_factory: Callable, max_tokens: int) -> list[int]:
    env = env_factory()
    try:
        env.reset(PROBE_SEED)
        ids = build_turn_prompt(tokenizer, env.system_prompt, env.task, [], env.observation, None)
    finally:
        env.close()
    return ids[:max_tokens]


def sync_rollout_engine(
    engine: GenerationEngine, model: torch.nn.Module, probe: Sequence[int]
) -> dict[str, float]:
    """Wake the engine and push the updated weights into it, checked (nothing to do for an engine
    that samples from the training model itself)."""
    engine.wake()
    if engine.shares_weights:
        return {}
    return sync_engine(engine, model, probe)


@torch.no_grad()
def recompute_old_logprobs(
    engine: GenerationEngine,
    model: torch.nn.Module,
    samples: list[Sample],
    settings: UpdateSettings,
) -> dict[str, float]:
    """Replace each sample's old_logprobs by the training model's, computed as the update computes
    (`settings.precision`), keeping the engine's as behaviour_logprobs; returns the gap between
    the two. Nothing to do when the engine samples from the training model in the update's own
    arithmetic (the hf engine, float32 throughout)."""
    samples = [s for s in samples if any(s.loss_mask)]  # filtered samples train on nothing
    if (engine.shares_weights and settings.precision == "float32") or not samples:
        return {}
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gaps, tokens, worst = 0.0, 0.0, 0.0
    step = settings.micro_batch_size or len(samples)
    try:
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            batch = collate_samples(chunk, settings.pad_token_id).to(device)
            logp, _ = update_logprobs(model, batch, settings)
            logp = (logp * batch.loss_mask).float().cpu()
            gap = ((logp - batch.old_logprobs.cpu()) * batch.loss_mask.cpu()).abs()
            gaps += float(gap.sum())
            tokens += float(batch.loss_mask.sum())
            worst = max(worst, float(gap.max()))
            for row, sample in enumerate(chunk):
                begin = len(sample.prompt_ids)
                sample.behaviour_logprobs = list(sample.old_logprobs)
                sample.old_logprobs = logp[row, begin : begin + len(sample.response_ids)].tolist()
    finally:
        model.train(was_training)
    return {
        "engine/old_logprob_gap_mean": gaps / max(tokens, 1.0),
        "engine/old_logprob_gap_max": worst,
        "time/old_logprobs": time.perf_counter() - t0,
    }
