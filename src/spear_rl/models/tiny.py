"""The tiny from-scratch policy: a small Qwen2 decoder sized for RL runs on a laptop CPU.

It is an ordinary HF `Qwen2ForCausalLM`, so everything downstream (generation, log-probs,
checkpoints via `save_pretrained`, LoRA) treats it exactly like a pretrained model.
"""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from spear_rl.models.config import ModelConfig, torch_dtype
from spear_rl.models.tokenizer import pad_token_id, stop_token_ids


def build_tiny_model(tokenizer, cfg: ModelConfig, seed: int) -> Qwen2ForCausalLM:
    """A Qwen2 decoder with tied embeddings, sized by `cfg.tiny_*`, initialised from `seed` only."""
    if cfg.tiny_hidden % cfg.tiny_heads:
        raise ValueError(
            f"model.tiny_hidden ({cfg.tiny_hidden}) must be divisible by model.tiny_heads "
            f"({cfg.tiny_heads})"
        )
    stops = stop_token_ids(tokenizer)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny_hidden,
        intermediate_size=4 * cfg.tiny_hidden,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        num_key_value_heads=cfg.tiny_heads,
        max_position_embeddings=8192,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        eos_token_id=stops[0],
        pad_token_id=pad_token_id(tokenizer),
        bos_token_id=None,
    )
    # Seed only this construction, leaving the caller's global RNG stream untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = pad_token_id(tokenizer)
    return model.to(dtype=torch_dtype(cfg.dtype))
