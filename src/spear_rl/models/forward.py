"""Per-token log-probabilities (and entropies) of a causal LM over right-padded sequences.

This is the one function the trainer uses to score tokens, so it must agree with the log-probs the
rollout records while sampling (tested to 1e-4). Memory: the [B, L, V] logits are never held whole.
For standard decoder-only models the final hidden states are projected by the LM head a chunk of
positions at a time, each chunk reduced to log_softmax + gather at once, and, when gradients are
on, each chunk is checkpointed so that only the [B, L, H] hidden states are kept for backward.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Largest logits block materialised at once (floats): 16M = 64 MiB in fp32.
LOGITS_CHUNK_ELEMENTS = 1 << 24

# A common prefix at least this long (e.g. the system prompt shared by every per_turn sample) is
# computed once per batch instead of once per row.
MIN_SHARED_PREFIX = 16

# Model types whose logits are exactly lm_head(decoder(x).last_hidden_state): no soft-capping or
# logit scaling. Others take the plain forward path (correct, but holds the full logits).
_PLAIN_HEAD_MODEL_TYPES = {"qwen2", "qwen3", "llama", "mistral", "smollm3", "olmo2", "phi3"}


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that count only attended tokens (0 at the first real token; pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    score_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """`logp[:, i] = log p(input_ids[:, i] | input_ids[:, :i])` under `logits / temperature`.

    `logp[:, 0] = 0` and positions with attention_mask 0 are 0. With `with_entropy`, also the
    entropy of the distribution that produced token i (same zeros). Gradients flow when enabled.

    `score_mask` (same shape, optional): score only the positions where it is nonzero (e.g. the
    response tokens of a loss mask); the others are 0. The decoder still reads every token, but the
    LM head projects only the scored positions: with long prompts and short replies most of its
    work (and, with a large vocabulary, most of the logits memory) is on prompt tokens.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to score tokens, got {temperature}")
    if input_ids.shape[1] < 2:
        zeros = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
        return zeros, (zeros.clone() if with_entropy else None)
    position_ids = positions_from_mask(attention_mask)
    targets = input_ids[:, 1:]
    vocab = _vocab_size(model)
    plain = _plain_head_parts(model)
    prefix = _shared_prefix_length(model, input_ids, attention_mask) if plain else 0
    if plain is not None and prefix and score_mask is None:
        logp, entropy = _shared_prefix_logprobs(
            plain, input_ids, attention_mask, position_ids, prefix, vocab, temperature, with_entropy
        )
    else:
        if plain is not None and prefix:
            prefix_hidden, rest_hidden = _shared_prefix_hidden(
                plain[0], input_ids, attention_mask, position_ids, prefix
            )
            batch = input_ids.shape[0]
            hidden = torch.cat([prefix_hidden.expand(batch, -1, -1), rest_hidden[:, :-1]], dim=1)
            project = plain[1]
        elif plain is not None:
            decoder, head = plain
            hidden = decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state[:, :-1]
            project = head
        else:
            hidden = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).logits[:, :-1]
            project = None
        if score_mask is None:
            logp, entropy = _chunked_logprobs(
                hidden, targets, project, vocab, temperature, with_entropy
            )
        else:
            wanted = score_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
            logp, entropy = _selected_logprobs(
                hidden, targets, wanted, project, vocab, temperature, with_entropy
            )
    mask = attention_mask[:, 1:].to(logp.dtype)
    pad = torch.zeros_like(logp[:, :1])
    logp = torch.cat([pad, logp * mask], dim=1)
    if entropy is not None:
        entropy = torch.cat([pad, entropy * mask], dim=1)
    return logp, entropy


def _shared_prefix_length(model, input_ids: Tensor, attention_mask: Tensor) -> int:
    """Length of the token prefix every row shares (0 when sharing is not worth it / possible)."""
    batch, length = input_ids.shape
    if batch < 2 or length < 2 * MIN_SHARED_PREFIX:
        return 0
    # Checkpointed layers drop the KV cache the shared-prefix path relies on.
    if torch.is_grad_enabled() and _checkpointing(model):
        return 0
    same = (input_ids == input_ids[:1]).all(0) & attention_mask.bool().all(0)
    differs = (~same).nonzero()
    prefix = int(differs[0]) if len(differs) else length
    prefix = min(prefix, length - 1)  # at least one position after the prefix
    return prefix if prefix >= MIN_SHARED_PREFIX else 0


def _shared_prefix_logprobs(
    plain, input_ids, attention_mask, position_ids, prefix, vocab, temperature, with_entropy
):
    """Run the shared prefix once (batch 1), broadcast its KV cache, then run the rest per row.

    Exactly the same function as the plain forward (causal attention: prefix states do not depend on
    what follows); gradients of the broadcast prefix add up over rows, as they would unshared.
    """
    decoder, head = plain
    batch = input_ids.shape[0]
    prefix_hidden, rest_hidden = _shared_prefix_hidden(
        decoder, input_ids, attention_mask, position_ids, prefix
    )
    targets = input_ids[:, 1:]
    # Positions 0..prefix-2 predict prefix tokens: identical for all rows, scored once.
    shared_logp, shared_entropy = _chunked_logprobs(
        prefix_hidden[:, :-1], targets[:1, : prefix - 1], head, vocab, temperature, with_entropy
    )
    rest = torch.cat([prefix_hidden[:, -1:].expand(batch, -1, -1), rest_hidden[:, :-1]], dim=1)
    rest_logp, rest_entropy = _chunked_logprobs(
        rest, targets[:, prefix - 1 :], head, vocab, temperature, with_entropy
    )
    logp = torch.cat([shared_logp.expand(batch, -1), rest_logp], dim=1)
    entropy = None
    if with_entropy:
        entropy = torch.cat([shared_entropy.expand(batch, -1), rest_entropy], dim=1)
    return logp, entropy


def _shared_prefix_hidden(decoder, input_ids, attention_mask, position_ids, prefix):
    """Hidden states of the shared prefix (batch 1) and of the rest of every row, which attends to
    the prefix through its KV cache broadcast over the rows."""
    from transformers import DynamicCache

    cache = DynamicCache(config=decoder.config)
    prefix_hidden = decoder(
        input_ids=input_ids[:1, :prefix],
        attention_mask=attention_mask[:1, :prefix],
        position_ids=position_ids[:1, :prefix],
        use_cache=True,
        **{CACHE_KWARG: cache},
    ).last_hidden_state
    cache.batch_repeat_interleave(input_ids.shape[0])
    rest_hidden = decoder(
        input_ids=input_ids[:, prefix:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prefix:],
        use_cache=True,
        **{CACHE_KWARG: cache},
    ).last_hidden_state
    return prefix_hidden, rest_hidden


def _selected_logprobs(hidden, targets, wanted, project, vocab, temperature, with_entropy):
    """`_chunked_logprobs` on the positions where `wanted` is True only; zeros elsewhere."""
    if not bool(wanted.any()):  # zeros that still belong to the graph, so backward() works
        zeros = hidden[..., 0].float() * 0.0
        return zeros, (zeros.clone() if with_entropy else None)
    picked_logp, picked_entropy = _chunked_logprobs(
        hidden[wanted][None], targets[wanted][None], project, vocab, temperature, with_entropy
    )
    zeros = torch.zeros(targets.shape, dtype=picked_logp.dtype, device=targets.device)
    logp = zeros.masked_scatter(wanted, picked_logp[0])
    entropy = zeros.masked_scatter(wanted, picked_entropy[0]) if with_entropy else None
    return logp, entropy


def _chunked_logprobs(hidden, targets, project, vocab, temperature, with_entropy):
    batch, length = targets.shape
    chunk = max(1, LOGITS_CHUNK_ELEMENTS // max(1, batch * vocab))
    recompute = torch.is_grad_enabled() and hidden.requires_grad and length > chunk
    logps, entropies = [], []
    for start in range(0, length, chunk):
        args = (hidden[:, start : start + chunk], targets[:, start : start + chunk])
        if recompute:
            out = checkpoint(
                _score_chunk, *args, project, temperature, with_entropy, use_reentrant=False
            )
        else:
            out = _score_chunk(*args, project, temperature, with_entropy)
        logps.append(out[0])
        entropies.append(out[1])
    logp = torch.cat(logps, dim=1)
    entropy = torch.cat(entropies, dim=1) if with_entropy else None
    return logp, entropy


def _score_chunk(hidden, targets, project, temperature, with_entropy):
    logits = project(hidden) if project is not None else hidden
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp, torch.zeros_like(logp)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


def _plain_head_parts(model):
    """(decoder, lm_head) when logits are exactly lm_head(decoder hidden states), else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in _PLAIN_HEAD_MODEL_TYPES:
        return None
    decoder = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def _checkpointing(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # new name first
        if hasattr(type(base), name):
            return bool(getattr(base, name))
    return False


def _cache_kwarg() -> str:
    """transformers renamed `past_key_values` to `cache` (5.x); use whichever this version takes."""
    import inspect

    from transformers import Qwen2Model

    params = inspect.signature(Qwen2Model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


CACHE_KWARG = _cache_kwarg()


def _vocab_size(model) -> int:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return int(base.config.vocab_size)
