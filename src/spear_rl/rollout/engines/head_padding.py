"""Serve a model whose attention head size vLLM's CPU kernels lack, as an exactly equivalent one.

vLLM's CPU attention supports head sizes 32, 64, 80, ... (not 16, the tiny policy's 8 heads of
128 / 8). A Qwen2/Llama attention head of size d can be embedded in a head of size s = r * d
(r an integer) without changing any output:
- rotary embedding (the "rotate half" layout) pairs dim i with i + d/2 at frequency
  theta^(-2i/d); in the wider head dim j pairs with j + s/2 at theta^(-2j/s). Placing old dim i
  at j = r*i and old dim i + d/2 at r*i + s/2 keeps every pair and its frequency;
- the other dims of q, k and v are zero, so they add nothing to q.k and the attention output;
- the scores are scaled by s^-0.5 instead of d^-0.5: q is multiplied by sqrt(s / d).
The engine is given a Llama-architecture copy (vLLM's Qwen2 derives the head size from the hidden
size; its Llama reads `head_dim`), with Qwen2's q/k/v biases and a zero o_proj bias. Log-probs
match the training model (checked at start and after every sync).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PADDABLE_MODEL_TYPES = ("qwen2", "llama")


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def padded_head_size(size: int, supported: list[int]) -> int | None:
    """The smallest supported head size that is a whole multiple of `size` (None if there is none)."""
    fits = [s for s in sorted(supported) if s >= size and s % size == 0]
    return fits[0] if fits else None


def padded_config_dict(config, size: int) -> dict:
    """A Llama config (as a dict for `LlamaConfig(**...)`) equivalent to `config` with head size
    `size`. Raises ValueError for a model this module cannot rewrite."""
    if config.model_type not in PADDABLE_MODEL_TYPES:
        raise ValueError(f"cannot re-head a {config.model_type!r} model")
    if getattr(config, "use_sliding_window", False):
        raise ValueError("cannot re-head a model with sliding-window attention")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"cannot re-head a model with {rope.get('rope_type')!r} rotary scaling")
    has_qkv_bias = config.model_type == "qwen2" or bool(getattr(config, "attention_bias", False))
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": size,
        "hidden_act": config.hidden_act,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": dict(rope) or {"rope_type": "default", "rope_theta": 10_000.0},
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": has_qkv_bias,
        "mlp_bias": False,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": getattr(config, "bos_token_id", None),
    }


def _dim_map(old: int, new: int) -> Tensor:
    """Where each of the `old` dims of a head goes in a head of `new` dims (see module doc)."""
    ratio, half = new // old, old // 2
    first = [ratio * i for i in range(half)]
    return torch.tensor(first + [new // 2 + j for j in first])


def pad_heads(state: dict[str, Tensor], old: int, new: int, with_o_bias: bool) -> dict[str, Tensor]:
    """Rewrite a Qwen2/Llama state dict from head size `old` to `new` (a multiple of it)."""
    if new % old or old % 2:
        raise ValueError(f"cannot pad heads of {old} dims to {new}")
    where = _dim_map(old, new)
    q_scale = math.sqrt(new / old)
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        module, _, leaf = name.rpartition(".")
        proj = module.rpartition(".")[2]
        if proj in ("q_proj", "k_proj", "v_proj"):
            scale = q_scale if proj == "q_proj" else 1.0
            heads = tensor.shape[0] // old
            rows = tensor.reshape(heads, old, *tensor.shape[1:]) * scale
            wide = rows.new_zeros(heads, new, *tensor.shape[1:])
            wide[:, where] = rows
            out[name] = wide.reshape(heads * new, *tensor.shape[1:])
        elif proj == "o_proj" and leaf == "weight":
            heads = tensor.shape[1] // old
            cols = tensor.reshape(tensor.shape[0], heads, old)
            wide = cols.new_zeros(tensor.shape[0], heads, new)
            wide[:, :, where] = cols
            out[name] = wide.reshape(tensor.shape[0], heads * new)
            if with_o_bias:
                out[f"{module}.bias"] = tensor.new_zeros(tensor.shape[0])
        else:
            out[name] = tensor
    return out
