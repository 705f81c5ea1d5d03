"""`rollout.engine` names -> engine builders, and what a builder is told about the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spear_rl.models.tokenizer import pad_token_id
from spear_rl.registry import Registry
from spear_rl.rollout.engines.base import GenerationEngine


@dataclass(frozen=True)
class EngineSettings:
    """What an engine needs to know beyond the policy (filled from the rollout config)."""

    # no defaults here: the rollout config's keys are their one home (train/rollout_engine.py)
    batch_size: int  # most sequences generated at once
    max_model_len: int  # longest prompt + response the engine must hold
    seed: int
    gpu_memory_utilization: float  # CUDA only: share of GPU memory vLLM may take
    sleep: bool  # CUDA only: vLLM sleep mode frees its memory during the update
    kv_reuse: bool  # hf: keep keys/values between turns (vLLM has its own prefix cache)
    precision: str  # hf: float32 | bfloat16 | auto, the arithmetic it samples in


EngineBuilder = Callable[..., GenerationEngine]
ENGINES: Registry[EngineBuilder] = Registry("rollout engine")


@ENGINES.register("hf")
def _build_hf(model, tokenizer, settings: EngineSettings) -> GenerationEngine:
    from spear_rl.rollout.engines.hf import HFEngine
    from spear_rl.train.precision import dtype_of, resolve_precision

    precision = resolve_precision(settings.precision, next(model.parameters()).device)
    # float32 keeps sampling from the policy's own weights, whatever their dtype
    dtype = dtype_of(precision) if precision != "float32" else None
    return HFEngine(
        model, pad_token_id(tokenizer), settings.batch_size, settings.kv_reuse, dtype=dtype
    )


@ENGINES.register("vllm")
def _build_vllm(model, tokenizer, settings: EngineSettings) -> GenerationEngine:
    from spear_rl.rollout.engines.vllm_engine import VLLMEngine

    return VLLMEngine(model, tokenizer, settings)


def make_engine(name: str, model, tokenizer, settings: EngineSettings) -> GenerationEngine:
    """Build the engine called `name` for `model` (unknown names list the known ones)."""
    return ENGINES.get(name)(model, tokenizer, settings)
