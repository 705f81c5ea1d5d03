"""Score each distinct row of a batch once.

A low-entropy policy plays the same moves in many episodes of a group, so a per_turn batch holds
many exact copies of one (prompt, reply) sample: about half of the default Sokoban run's update
rows. Their log-probs are identical, so `token_logprobs` computes them once and copies the result
to every row; the backward pass of that copy sums the rows' gradients, which is exactly what the
copies would have contributed one by one.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Config fields through which HF models apply dropout in train mode: with any of them on, copies
# of a row would draw different masks, so they are not merged.
_DROPOUT_FIELDS = (
    "attention_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
)


def distinct_rows(
    model, input_ids: Tensor, attention_mask: Tensor, score_mask: Tensor | None
) -> tuple[Tensor, Tensor] | None:
    """(`first`, `inverse`): row `first[u]` stands for distinct row u and row b is `inverse[b]`.

    None when every row is distinct or merging could change the result (dropout active). Rows
    are equal when they attend to the same tokens and, with a `score_mask`, score the same ones.
    """
    batch = input_ids.shape[0]
    if batch < 2 or _dropout_active(model):
        return None
    attended = attention_mask.bool()
    key = input_ids.masked_fill(~attended, -1)
    if score_mask is not None:
        key = torch.cat([key, (score_mask.bool() & attended).long()], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    count = int(inverse.max()) + 1
    if count == batch:
        return None
    rows = torch.arange(batch, device=inverse.device)
    first = torch.full((count,), batch, dtype=torch.long, device=inverse.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return first, inverse


def _dropout_active(model) -> bool:
    if not model.training:
        return False
    inner = model
    for wrapper in ("module", "_orig_mod"):  # DDP, torch.compile: the config is on the inner model
        inner = getattr(inner, wrapper, inner)
    config = getattr(model, "config", None) or getattr(inner, "config", None)
    if any(float(getattr(config, name, 0.0) or 0.0) > 0 for name in _DROPOUT_FIELDS):
        return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
