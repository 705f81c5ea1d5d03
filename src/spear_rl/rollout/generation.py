"""Batched sampling with a KV cache, recording the behaviour log-prob of every sampled token.

A hand-written loop rather than HF `generate`: on the tiny CPU models it is faster (measured at
batch 64: ~1.3x with no early stops, more when rows stop early), it prefills a prefix shared by all
prompts (the system prompt) once instead of once per row, it preallocates the KV cache, and it
returns exactly what the trainer needs (sampled ids, their log-probs, whether the token limit was
hit) with no post-processing. Prompts are left-padded; position ids count real tokens only.

A row can also start from keys/values computed earlier (`prefixes`: a `PrefixKV` of the first
tokens of its prompt, e.g. the previous turn of the same episode): only the rest of the prompt is
prefilled. With `keep_kv` every output carries the keys/values of its prompt + response (all but
the last token, which was never fed), for the caller to hand back on the next turn. Keys/values
depend only on the tokens and their positions (which count real tokens), not on the row's padding
or batch, so any row may reuse any prefix of the same token ids under the same weights.

Recorded log-probs are `log_softmax(logits / temperature)` of the sampled token, i.e. what
`token_logprobs(model, ..., temperature)` recomputes for the same tokens, so the PPO ratio is exactly
1 on fresh data. With `top_p < 1` tokens are drawn from the renormalised nucleus, but the recorded
log-prob is still that of the full tempered distribution (the convention of verl/TRL, which
recompute old log-probs with a plain forward pass); the nucleus truncation itself is not part of
the ratio. `temperature == 0` means greedy decoding, with log-probs of the untempered distribution.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import StaticLayer

from spear_rl.models.forward import CACHE_KWARG, positions_from_mask

# Prompts sharing a prefix this long (the system prompt, in practice) prefill it once per batch.
MIN_SHARED_PREFIX = 16
SHARE_PREFIXES = True  # switch for tests and benchmarks
# Rows that stopped leave the decoding batch once they are this share of it (see _sample_loop).
DROP_STOPPED_SHARE = 0.25
DROP_STOPPED_ROWS = True  # switch for benchmarks (benchmarks/drop_stopped.py)


@dataclass
class PrefixKV:
    """Keys/values the model computed for `ids` (a sequence's first tokens): per layer a (keys,
    values) pair of shape [kv_heads, len(ids), head_dim]. Valid only under the weights that made
    them."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, length: int) -> PrefixKV:
        """The first `length` tokens (views, no copy): keys/values of a position depend only on
        the tokens up to it."""
        if length == len(self.ids):
            return self
        return PrefixKV(self.ids[:length], [(k[:, :length], v[:, :length]) for k, v in self.layers])

    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)


@dataclass
class GenOutput:
    token_ids: list[int]  # sampled ids, the stop token included when one was sampled
    logprobs: list[float]  # behaviour log-prob of each sampled id
    truncated: bool  # max_new_tokens reached without a stop token
    # prompt tokens run through the model for this row (a prefix shared by the batch counts once,
    # on its first row), and prompt tokens whose keys/values the row took from elsewhere (an
    # earlier call, the batch's shared prefix, an identical prompt); None: the engine does not say
    prefilled: int | None = None
    reused: int | None = None
    kv: PrefixKV | None = None  # with keep_kv: keys/values of prompt + token_ids[:-1]


class GenerationError(RuntimeError):
    """The model produced unusable logits (NaN/inf): training has diverged."""


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_token_ids: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator,
    prefixes: Sequence[PrefixKV | None] | None = None,
    keep_kv: bool = False,
    merge_duplicates: bool = False,
) -> list[GenOutput]:
    """Sample a continuation of every prompt (left-padded into one batch). Deterministic given the
    state of `generator`. Callers bound the batch size (see RolloutConfig.generation_batch_size).

    `prefixes[i]`: keys/values of the first tokens of prompt i (shorter than the prompt), whose
    prefill is skipped; needs `supports_kv_reuse(model)`, like `keep_kv`. `merge_duplicates`:
    identical prompts are prefilled once (the GRPO group's first turn) and the result copied."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    plain_cache = supports_kv_reuse(model)
    if (prefixes is not None or keep_kv) and not plain_cache:
        raise ValueError("this model's KV cache is not plain full attention: no KV reuse")
    sources: list[PrefixKV | None] = (
        list(prefixes) if prefixes is not None else [None] * len(prompts)
    )
    if len(sources) != len(prompts):
        raise ValueError("one prefix (or None) per prompt is required")
    reused = [_check_prefix(p, s) for p, s in zip(prompts, sources, strict=True)]
    stops = torch.tensor(
        [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids), dtype=torch.long
    )
    was_training = model.training
    model.eval()
    try:
        shared = _shared_prefix_length(prompts) if plain_cache else 0
        first_sharer = None
        if shared and any(r < shared for r in reused):
            common = _prefill_prefix(model, list(prompts[0][:shared]))
            for row, r in enumerate(reused):
                if r < shared:  # the batch's common prefix is longer than what the row kept
                    sources[row] = common
                    first_sharer = row if first_sharer is None else first_sharer
        copy_of = _first_copies(prompts) if merge_duplicates else list(range(len(prompts)))
        for row, first in enumerate(copy_of):
            if first != row:  # a duplicate computes nothing: it takes its first copy's cache
                sources[row] = sources[first]
        tokens, logprobs, finished, kvs = _sample_loop(
            model,
            prompts,
            sources,
            copy_of,
            pad_token_id,
            max_new_tokens,
            stops,
            temperature,
            top_p,
            generator,
            keep_kv,
        )
    finally:
        model.train(was_training)
    outputs = []
    for row, prompt in enumerate(prompts):
        held = len(sources[row]) if sources[row] is not None else 0
        own = len(prompt) - held if copy_of[row] == row else 0
        prefilled = own + (shared if row == first_sharer else 0)
        outputs.append(
            GenOutput(
                tokens[row],
                logprobs[row],
                truncated=not finished[row],
                prefilled=prefilled,
                reused=len(prompt) - own,
                kv=kvs[row],
            )
        )
    return outputs


def _first_copies(prompts: Sequence[Sequence[int]]) -> list[int]:
    """For each row, the first row with the same prompt (itself if none came before)."""
    first: dict[tuple[int, ...], int] = {}
    return [first.setdefault(tuple(p), row) for row, p in enumerate(prompts)]


def _check_prefix(prompt: Sequence[int], prefix: PrefixKV | None) -> int:
    if prefix is None:
        return 0
    if len(prefix) >= len(prompt) or list(prompt[: len(prefix)]) != prefix.ids:
        raise ValueError("a reused prefix must be a proper prefix of its prompt")
    return len(prefix)


def _sample_loop(
    model,
    prompts,
    sources,
    copy_of,
    pad_token_id,
    max_new_tokens,
    stops,
    temperature,
    top_p,
    generator,
    keep_kv,
):
    """Prefill once, then one token per step for every row until all rows stopped or the limit.

    Cache layout of row i: [holes | its reused prefix (sources[i]) | pads | the rest of its prompt |
    generated tokens], the reused prefixes right-aligned at column `held`, the rest of the prompts
    left-padded after it; holes and pads are masked and position ids count real tokens, so a row
    computes exactly what it would alone. The KV cache is a preallocated StaticCache: on CPU it is
    faster per step than the growing DynamicCache, which re-concatenates the whole cache every
    step. Rows that stopped are dropped from the batch (cache rows included) once they are a quarter
    of it, so a few long replies do not keep every finished row computing; the loop ends when all
    rows stop. Only rows that are their own first copy (`copy_of[row] == row`) are prefilled; the
    others get a copy of their first copy's cache and logits.
    """
    device = _device(model)
    batch = len(prompts)
    distinct = sorted(set(copy_of))
    lengths = [len(s) if s is not None else 0 for s in sources]
    held = max(lengths)
    rests = [p[n:] for p, n in zip(prompts, lengths, strict=True)]
    input_ids, attention_mask = _left_pad([rests[r] for r in distinct], pad_token_id, device)
    width = input_ids.shape[1]
    cache = StaticCache(config=_config(model), max_cache_len=held + width + max_new_tokens)
    # Mask over the whole cache: reused prefixes 1, holes and pads 0, everything the rows will
    # generate 1 (causality comes from the cache position, so later slots are never attended early).
    held_mask = attention_mask.new_zeros(len(distinct), held)
    for i, row in enumerate(distinct):
        held_mask[i, held - lengths[row] :] = 1
    prompt_mask = torch.cat([held_mask, attention_mask], dim=1)
    positions = positions_from_mask(prompt_mask)
    full_mask = torch.cat([prompt_mask, prompt_mask.new_ones(len(distinct), max_new_tokens)], dim=1)
    if held:
        _place_prefixes(cache, [sources[r] for r in distinct], held)
    logits = model(
        input_ids=input_ids,
        attention_mask=full_mask,
        position_ids=positions[:, held:],
        **{CACHE_KWARG: cache},
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    if len(distinct) < batch:
        where = {row: i for i, row in enumerate(distinct)}
        index = torch.tensor([where[first] for first in copy_of], device=device)
        logits, prompt_mask, full_mask = logits[index], prompt_mask[index], full_mask[index]
        for layer in cache.layers:  # plain static layers (supports_kv_reuse): copy whole rows
            layer.keys, layer.values = layer.keys[index], layer.values[index]
            layer.batch_size = batch
    next_position = prompt_mask.sum(-1, keepdim=True)  # [B, 1]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logprobs: list[list[float]] = [[] for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # per prompt
    rows = torch.arange(batch, device=device)  # the prompt in each slot of the (shrinking) batch
    kvs: list[PrefixKV | None] = [None] * batch
    stops = stops.to(device)
    droppable = DROP_STOPPED_ROWS and all(type(layer) is StaticLayer for layer in cache.layers)

    def keep_row_kv(slot: int, row: int) -> None:
        # the row's real slots: its reused prefix, its prompt's rest, its tokens but the last
        # (never fed); rests and generated tokens are contiguous
        start = held + width - len(rests[row])
        spans = ((held - lengths[row], held), (start, held + width + len(tokens[row]) - 1))
        kvs[row] = PrefixKV(
            list(prompts[row]) + tokens[row][:-1],
            [_slots(layer, slot, spans) for layer in cache.layers],
        )

    for step in range(max_new_tokens):
        chosen, chosen_logp = _sample(logits, temperature, top_p, generator)
        was_done = finished[rows].tolist()
        for row, done, token, logp in zip(
            rows.tolist(), was_done, chosen.tolist(), chosen_logp.tolist(), strict=True
        ):
            if not done:
                tokens[row].append(token)
                logprobs[row].append(logp)
        finished[rows] |= torch.isin(chosen, stops)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        done = finished[rows]
        # drop the stopped rows once they are a quarter of the batch (the copy then pays for
        # itself); only plain static layers, whose rows this can index
        if droppable and int(done.sum()) >= DROP_STOPPED_SHARE * len(rows):
            if keep_kv:
                for slot in done.nonzero().flatten().tolist():
                    keep_row_kv(slot, int(rows[slot]))
            live = (~done).nonzero().flatten()
            rows, chosen = rows[live], chosen[live]
            full_mask, next_position = full_mask[live], next_position[live]
            for layer in cache.layers:  # plain static layers: keep the live rows
                layer.keys, layer.values = layer.keys[live], layer.values[live]
                layer.batch_size = len(live)
        logits = model(
            input_ids=chosen.unsqueeze(-1),
            attention_mask=full_mask,
            position_ids=next_position,
            **{CACHE_KWARG: cache},
            use_cache=True,
        ).logits[:, -1]
        next_position = next_position + 1
    if keep_kv:
        for slot, row in enumerate(rows.tolist()):
            keep_row_kv(slot, row)
    return tokens, logprobs, finished.tolist(), kvs


def _slots(layer, row: int, spans) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of one row's keys and values at the cache columns `spans` ((start, end) pairs)."""
    return (
        torch.cat([layer.keys[row, :, a:b] for a, b in spans], dim=1),
        torch.cat([layer.values[row, :, a:b] for a, b in spans], dim=1),
    )


def _prefill_prefix(model, ids: list[int]) -> PrefixKV:
    """Keys/values of `ids` from one batch-1 pass (a prefix every row of a batch shares)."""
    device = _device(model)
    cache = DynamicCache(config=_config(model))
    model(
        input_ids=torch.tensor([ids], dtype=torch.long, device=device),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
        position_ids=torch.arange(len(ids), device=device)[None],
        **{CACHE_KWARG: cache},
        use_cache=True,
        logits_to_keep=1,
    )
    return PrefixKV(ids, [(layer.keys[0], layer.values[0]) for layer in cache.layers])


def _place_prefixes(cache, sources: list[PrefixKV | None], held: int) -> None:
    """Write each row's reused keys/values right-aligned before column `held` of the static cache
    (rows sharing one prefix object are written in one indexed copy)."""
    groups: dict[int, tuple[PrefixKV, list[int]]] = {}
    for row, source in enumerate(sources):
        if source is not None and len(source):
            groups.setdefault(id(source), (source, []))[1].append(row)
    template = next(iter(groups.values()))[0]
    batch = len(sources)
    for index, layer in enumerate(cache.layers):
        keys, values = template.layers[index]
        layer.lazy_initialization(
            keys.new_empty(batch, keys.shape[0], 0, keys.shape[-1]),
            values.new_empty(batch, values.shape[0], 0, values.shape[-1]),
        )
        for source, rows in groups.values():
            n = len(source)
            where = torch.tensor(rows, device=layer.keys.device)
            keys, values = source.layers[index]
            layer.keys[where, :, held - n : held] = keys.unsqueeze(0)
            layer.values[where, :, held - n : held] = values.unsqueeze(0)
        layer.cumulative_length.fill_(held)


def supports_kv_reuse(model) -> bool:
    """Prefix copying writes StaticLayer internals: only for plain full-attention static layers,
    in a transformers version whose layers take (keys, values) to initialise (not all 5.x do)."""
    cache = StaticCache(config=_config(model), max_cache_len=1)
    return all(
        type(layer) is StaticLayer
        and hasattr(layer, "cumulative_length")
        and _takes_keys_and_values(getattr(layer, "lazy_initialization", None))
        for layer in cache.layers
    )


def _takes_keys_and_values(method) -> bool:
    if method is None:
        return False
    kinds = [p.kind for p in inspect.signature(method).parameters.values()]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Parameter.VAR_POSITIONAL in kinds or sum(k in positional for k in kinds) >= 2


def _shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with (keeping >= 1 token per row after it), if worth sharing."""
    if len(prompts) < 2 or not SHARE_PREFIXES:
        return 0
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    length = 0
    while length < limit and all(p[length] == first[length] for p in prompts):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.float()
    # min and max carry any NaN or inf: a tenth of the cost of isfinite(logits).all() on the CPU
    if not bool(torch.isfinite(torch.stack(torch.aminmax(logits))).all()):
        raise GenerationError(
            "the model produced NaN/inf logits while sampling; training has diverged "
            "(lower the learning rate or check the checkpoint)"
        )
    if temperature == 0:
        log_probs = torch.log_softmax(logits, dim=-1)
        chosen = log_probs.argmax(-1)
        return chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    probs = log_probs.exp()
    if top_p < 1.0:
        probs = _nucleus(probs, top_p)
    chosen = _inverse_cdf(probs, generator)
    return chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)


def _inverse_cdf(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row, drawn with probability `probs` (unnormalised, >= 0): the first token
    whose cumulative mass passes a uniform draw. One random number per row, where
    `torch.multinomial` draws one per vocabulary entry (an exponential each: 10-20% of a CPU
    decoding step at a 49k vocabulary); zero-probability tokens are never chosen. The boundaries
    are exact to ~1e-7 of the mass, multinomial's own float32 precision: PyTorch sums float32 in
    double on the CPU (and in float32 elsewhere, so there the sums are float64)."""
    cdf = probs.cumsum(-1) if probs.device.type == "cpu" else probs.double().cumsum(-1)
    total = cdf[:, -1:]
    uniform = torch.rand(
        len(probs), 1, generator=generator, dtype=torch.float64, device=generator.device
    )
    # below the total mass even where u * total rounds up to it, so a token is always found
    threshold = torch.minimum(
        (uniform.to(probs.device) * total).to(cdf.dtype), total.nextafter(total.new_zeros(()))
    )
    return torch.searchsorted(cdf, threshold, right=True).squeeze(-1)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches top_p (the top token stays)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def _left_pad(
    prompts: Sequence[Sequence[int]], pad_token_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        attention_mask[i, width - len(prompt) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _config(model):
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def _device(model) -> torch.device:
    return next(model.parameters()).device
