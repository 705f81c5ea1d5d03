"""Per-token log-probabilities (and entropies) of a causal LM over right-padded sequences.

This is the one function the trainer uses to score tokens, so it must agree with the log-probs the
rollout records while sampling (tested to 1e-4). Memory: the [B, L, V] logits are never held whole.
For standard decoder-only models the final hidden states are projected by the LM head a chunk of
positions at a time, each chunk reduced to log_softmax + gather at once, and, when gradients are
on and the scored logits are large, each chunk is checkpointed so that only the [B, L, H] hidden
states are kept for backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from spear_rl.models.unique_rows import distinct_rows

# Largest logits block materialised at once (floats): 16M = 64 MiB in fp32.
LOGITS_CHUNK_ELEMENTS = 1 << 24
# Scored logits up to this many (positions x vocabulary) keep their chunks for backward; more are
# recomputed there (checkpointed). Keeping holds about 3 floats per element (logits, log-softmax,
# its exp for the entropy): at most ~0.8 GB in fp32. Recomputing costs a second LM head and
# log-softmax per chunk: a third of the default's SFT and update head time (docs/benchmarks.md).
# The numbers are the same either way (the recompute repeats the same kernels on the same inputs).
KEEP_LOGITS_ELEMENTS = 1 << 26

# A prefix at least this long that rows share (the system prompt of every per_turn sample, the
# prompt of a GRPO group's replies) is computed once per batch or group instead of once per row.
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

    Rows that are copies of one another (same tokens, same score mask) are computed once, unless
    the model is training with dropout; rows sharing a prompt prefix compute it once.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to score tokens, got {temperature}")
    distinct = distinct_rows(model, input_ids, attention_mask, score_mask)
    if distinct is not None:  # copies of a row are scored once (models/unique_rows.py)
        first, inverse = distinct
        logp, entropy = _rows_logprobs(
            model,
            input_ids[first],
            attention_mask[first],
            temperature,
            with_entropy,
            None if score_mask is None else score_mask[first],
        )
        # index_select, not logp[inverse]: its backward adds the copies' gradients in a fixed order
        # (see _select_cache_rows)
        return logp.index_select(0, inverse), (
            None if entropy is None else entropy.index_select(0, inverse)
        )
    return _rows_logprobs(model, input_ids, attention_mask, temperature, with_entropy, score_mask)


def _rows_logprobs(model, input_ids, attention_mask, temperature, with_entropy, score_mask):
    if input_ids.shape[1] < 2:
        zeros = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
        return zeros, (zeros.clone() if with_entropy else None)
    position_ids = positions_from_mask(attention_mask)
    targets = input_ids[:, 1:]
    vocab = _vocab_size(model)
    plain = _plain_head_parts(model)
    groups = _prefix_groups(model, input_ids, attention_mask) if plain else None
    if groups is not None and len(groups.leaders) == 1 and score_mask is None:
        prefix = int(groups.prefix[0])  # the whole batch shares it: its positions scored once
        logp, entropy = _shared_prefix_logprobs(
            plain, input_ids, attention_mask, position_ids, prefix, vocab, temperature, with_entropy
        )
    else:
        if groups is not None:
            hidden = _grouped_prefix_hidden(
                plain[0], input_ids, attention_mask, position_ids, groups
            )[:, :-1]
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


@dataclass
class PrefixGroups:
    """Rows that share a prompt prefix (e.g. a GRPO group's copies of one prompt).

    Each group's first `prefix` tokens are computed once; `group[b]` is row b's group, `leaders[g]`
    a row of group g, `prefix[g]` the tokens all its rows share (>= 1, < each row's length).
    """

    group: Tensor  # [B] long
    leaders: Tensor  # [G] long
    prefix: Tensor  # [G] long


def _prefix_groups(model, input_ids: Tensor, attention_mask: Tensor) -> PrefixGroups | None:
    """The grouping of rows by shared prefix that costs the fewest padded token positions, or None
    when no grouping beats one plain forward (or sharing is impossible).

    Rows sorted lexicographically put shared prefixes next to each other; a cut at `t` tokens makes
    a group of each run of neighbours sharing >= t tokens. Cost: the prefix pass (groups x longest
    group prefix) plus the rest pass (rows x longest remainder), both padded.
    """
    batch, width = input_ids.shape
    if batch < 2 or width < 2 * MIN_SHARED_PREFIX:
        return None
    # Checkpointed layers drop the KV cache the shared-prefix path relies on: HF's do so whenever
    # the model is in train mode, with or without grad.
    if _checkpointing(model) and (model.training or torch.is_grad_enabled()):
        return None
    # A sliding window counts cache columns, not positions: the padding between a group's shorter
    # prefix and a row's rest would take real tokens' places in it. One group has no such padding.
    window = _sliding_window(model)
    one_group = window is not None and window < 2 * width
    right_padded = bool((attention_mask[:, :-1] >= attention_mask[:, 1:]).all())
    lengths = attention_mask.sum(1).tolist()
    if not right_padded or min(lengths) < 2:
        return None
    rows = input_ids.tolist()
    order = sorted(range(batch), key=lambda b: rows[b][: lengths[b]])
    ids = input_ids[order]
    length = torch.tensor([lengths[b] for b in order], device=ids.device)
    # tokens row i shares with row i+1 (in sorted order), leaving each at least one of its own
    limit = torch.minimum(length[1:], length[:-1]) - 1
    same = (ids[1:] == ids[:-1]) & (torch.arange(width, device=ids.device)[None] < limit[:, None])
    shared = same.long().cumprod(1).sum(1).tolist()
    best, best_cost = None, batch * width
    for cut in sorted({s for s in shared if s >= MIN_SHARED_PREFIX}):
        runs, prefixes = [[order[0]]], [None]
        for link, row in zip(shared, order[1:], strict=True):
            if link >= cut:
                runs[-1].append(row)
                prefixes[-1] = link if prefixes[-1] is None else min(prefixes[-1], link)
            else:
                runs.append([row])
                prefixes.append(None)
        if one_group and len(runs) > 1:
            continue
        longest = max(p for p in prefixes if p is not None)
        # a row alone computes its own prompt in the prefix pass (no padding added)
        prefixes = [
            p if p is not None else max(1, min(lengths[run[0]] - 1, longest))
            for p, run in zip(prefixes, runs, strict=True)
        ]
        rest = max(lengths[b] - p for run, p in zip(runs, prefixes, strict=True) for b in run)
        cost = len(runs) * max(prefixes) + batch * rest
        if cost < best_cost:
            best, best_cost = (runs, prefixes), cost
    if best is None:
        return None
    runs, prefixes = best
    group = torch.empty(batch, dtype=torch.long)
    for g, run in enumerate(runs):
        group[run] = g
    return PrefixGroups(
        group=group.to(input_ids.device),
        leaders=torch.tensor([run[0] for run in runs], device=input_ids.device),
        prefix=torch.tensor(prefixes, device=input_ids.device),
    )


def _grouped_prefix_hidden(decoder, input_ids, attention_mask, position_ids, groups):
    """Final hidden states [B, L, H] with each group's prefix computed once.

    The prefix pass runs the leaders' prefixes (right-padded to the longest); its KV cache is
    copied to every row of the group, and the rest pass runs each row from its group's prefix on,
    attending to that cache (the padding between a short prefix and the row's rest is masked).
    Causal attention makes this the same function as the plain forward; gradients of a shared
    prefix add up over its rows, as they would unshared.
    """
    from transformers import DynamicCache

    batch, width = input_ids.shape
    device = input_ids.device
    prefix_len = int(groups.prefix.max())
    span = torch.arange(prefix_len, device=device)
    prefix_mask = (span[None] < groups.prefix[:, None]).long()
    cache = DynamicCache(config=decoder.config)
    prefix_hidden = decoder(
        input_ids=input_ids[groups.leaders, :prefix_len],
        attention_mask=prefix_mask,
        position_ids=position_ids[groups.leaders, :prefix_len],
        use_cache=True,
        **{CACHE_KWARG: cache},
    ).last_hidden_state
    _select_cache_rows(cache, groups.group)
    row_prefix = groups.prefix[groups.group]
    rest_len = int((attention_mask.sum(1) - row_prefix).max())
    index = row_prefix[:, None] + torch.arange(rest_len, device=device)[None]
    inside = index < width
    index = index.clamp(max=width - 1)
    rest_hidden = decoder(
        input_ids=input_ids.gather(1, index),
        attention_mask=torch.cat(
            [prefix_mask[groups.group], attention_mask.gather(1, index) * inside], dim=1
        ),
        position_ids=position_ids.gather(1, index),
        use_cache=True,
        **{CACHE_KWARG: cache},
    ).last_hidden_state
    # position t of row b: the group's prefix state below row_prefix[b], else the row's own
    states = torch.cat([prefix_hidden.index_select(0, groups.group), rest_hidden], dim=1)
    t = torch.arange(width, device=device)[None]
    source = torch.where(t < row_prefix[:, None], t, prefix_len + t - row_prefix[:, None])
    source = source.clamp(max=states.shape[1] - 1)  # padding positions: any state, never scored
    return states.gather(1, source[..., None].expand(-1, -1, states.shape[-1]))


def _select_cache_rows(cache, index: Tensor) -> None:
    """`cache.batch_select_indices(index)` through `index_select`. transformers selects with
    `keys[index]`, whose backward on the CPU (index_put_ with accumulate) adds the rows that share
    a prefix in an order that depends on thread timing: two runs of the same batch got different
    last bits, more often on a busy machine. index_select's backward (index_add_) adds them in index
    order, the same every time. Cache layers with more per-row state keep transformers' own."""
    from transformers.cache_utils import DynamicLayer

    for layer in cache.layers:
        if type(layer).batch_select_indices is not DynamicLayer.batch_select_indices:
            layer.batch_select_indices(index)
        elif layer.get_seq_length() > 0:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)


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
    recompute = (
        torch.is_grad_enabled()
        and hidden.requires_grad
        and batch * length * vocab > KEEP_LOGITS_ELEMENTS
    )
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


def base_model(model):
    """The transformers model inside a peft (LoRA) wrapper; any other model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _plain_head_parts(model):
    """(decoder, lm_head) when logits are exactly lm_head(decoder hidden states), else None."""
    base = base_model(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in _PLAIN_HEAD_MODEL_TYPES:
        return None
    decoder = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def contiguous_head_input(model) -> None:
    """Make the LM head's input contiguous before it multiplies (a forward pre-hook).

    Generation asks for the last position's logits only (`logits_to_keep=1`), and transformers
    slices the hidden states to a [B, 1, H] view with the stride of the whole sequence. On the CPU
    `linear` cannot fold that view into one matrix product and multiplies batch by batch against an
    expanded copy of the head's weight: [32, 1, 576] x SmolLM2's [49152, 576] head took 115 ms in
    fp32 and 3.0 s in bf16, against 12 and 5 ms from a contiguous input (2 cores, AMX)."""
    base = base_model(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None or getattr(head, "_spear_contiguous_input", False):
        return
    head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    head._spear_contiguous_input = True


def _sliding_window(model) -> int | None:
    """The attention window when some layers slide (None: full attention everywhere)."""
    base = base_model(model)
    config = getattr(base, "config", None)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not window or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


def _checkpointing(model) -> bool:
    base = base_model(model)
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
    base = base_model(model)
    return int(base.config.vocab_size)
