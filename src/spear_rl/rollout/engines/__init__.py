"""Generation engines behind one interface (base.py): `hf` (our sampler) and `vllm` (colocated).

`ENGINES` maps a `rollout.engine` name to a builder `(model, tokenizer, settings) -> engine`; the
vLLM one imports vllm only when it is picked.
"""

from __future__ import annotations

from spear_rl.rollout.engines.base import EngineSyncError, GenerationEngine, Sampling
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.engines.registry import ENGINES, EngineSettings, make_engine

__all__ = [
    "ENGINES",
    "EngineSettings",
    "EngineSyncError",
    "GenerationEngine",
    "HFEngine",
    "Sampling",
    "make_engine",
]
