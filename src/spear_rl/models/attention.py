"""Grouped-query attention without copying keys and values, for models on the CPU.

Transformers' `sdpa` attention repeats each key/value head for its group of query heads
(`repeat_kv`) whenever an attention mask is given on a CPU: a full copy of the KV cache, in every
layer, at every decoding step. Batches here are padded, so there nearly always is a mask. PyTorch's
SDPA takes grouped heads itself (`enable_gqa`, torch >= 2.5) and on the CPU gives the same output
bit for bit, without the copy (tests/models/test_attention.py). With SmolLM2-135M (9 query heads, 3
key/value heads) the copies were 39% of a decoding step's time.

`use_grouped_sdpa(model)` switches a model that uses `sdpa` to this attention. Anything else runs
transformers' own `sdpa` unchanged: no grouped heads, no mask, a GPU (where a mask with
`enable_gqa` falls back to the slow math kernel), position biases or paged caches. The switch is
made in memory only: a saved model's config still says `sdpa`, so plain transformers loads it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

NAME = "spear_grouped_sdpa"
_MIN_TORCH = (2, 5)  # enable_gqa


def grouped_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query [B, H, Q, D]; key, value [B, H_kv, K, D]; returns ([B, Q, H, D], None) like `sdpa`."""
    grouped = key.shape[1] != query.shape[1]
    special = kwargs.get("position_bias") is not None or kwargs.get("cache") is not None
    if not grouped or attention_mask is None or query.device.type != "cpu" or special:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    output = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=True,
    )
    return output.transpose(1, 2).contiguous(), None


def use_grouped_sdpa(model) -> bool:
    """Switch `model` (a transformers causal LM) from `sdpa` to the copy-free grouped attention;
    True when switched. Models with other attention (eager, flash, flex) are left as they are."""
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < _MIN_TORCH:
        return False
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_sdpa_attention)
    # without a mask function of its own, transformers would pass a custom attention no mask
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return True
