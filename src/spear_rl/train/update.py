"""The policy update: on-policy mini-batches plus SPEAR's replay term (spec §4-§6).

`joint` (default): every optimiser step minimises L_on(mini-batch) + c(t) * L_replay(replay draw),
so the curriculum coefficient acts linearly on the replay gradient. `separate` (the reference):
the on-policy steps first, then extra optimiser steps on replay mini-batches scaled by c(t).
Micro-batches only bound memory: aggregation normalisers, and clip_cov / kl_cov's token choice,
are computed over the whole mini-batch, so the accumulated gradient equals the unsplit one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spear_rl.algos.aggregation import aggregate_loss, aggregation_norm
from spear_rl.algos.cov_selection import Collective, local_only
from spear_rl.algos.losses import (
    PolicyLossConfig,
    compute_policy_loss,
    entropy_bonus_term,
    low_var_kl,
    needs_token_selection,
    select_cov_tokens,
)
from spear_rl.algos.tis import truncated_is_weights
from spear_rl.models.forward import token_logprobs
from spear_rl.rollout.batch import TokenBatch, collate_samples
from spear_rl.rollout.sample import Sample
from spear_rl.train.distributed import (
    cov_collectives,
    global_layout,
    global_sum,
    my_count,
    shared_permutation,
)
from spear_rl.train.parallel import accumulate_then_sync
from spear_rl.train.precision import autocast

ReplayDraw = Callable[[int], list[tuple[Sample, float]]]


@dataclass
class LossSpec:
    """Which loss to apply to a part of the batch, and how to aggregate it."""

    name: str
    params: PolicyLossConfig
    agg_mode: str
    t_norm: float
    entropy_coef: float = 0.0
    kl_coef: float = 0.0


@dataclass
class UpdateSettings:
    on_policy: LossSpec
    replay: LossSpec
    mini_batch_size: int  # 0 = whole batch
    micro_batch_size: int
    ppo_epochs: int
    replay_batch: int  # 0 = replay_ratio x the on-policy mini-batch size
    replay_ratio: float
    replay_update: str  # joint | separate
    grad_clip: float
    temperature: float
    pad_token_id: int
    # resolved float32 | bfloat16: the forward passes' arithmetic (bf16 autocast; weights,
    # gradients and AdamW stay in the parameter dtype)
    precision: str = "float32"

    def replay_draw_size(self, on_policy_samples: int) -> int:
        """Replay samples to draw next to a mini-batch of `on_policy_samples` (at least 1)."""
        if self.replay_batch > 0:
            return self.replay_batch
        return max(1, math.ceil(self.replay_ratio * on_policy_samples))


COUNT_METRICS = ("selected_tokens", "valid_tokens")  # totals over the step, not means


class MetricSums:
    """Token-weighted running means of per-micro-batch metrics (totals for counts)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)

    def add(self, prefix: str, metrics: dict[str, float], weight: float) -> None:
        for key, value in metrics.items():
            is_count = key in COUNT_METRICS
            self.sums[f"{prefix}{key}"] += float(value) * (1.0 if is_count else weight)
            self.weights[f"{prefix}{key}"] = (
                1.0 if is_count else self.weights[f"{prefix}{key}"] + weight
            )

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] for k in self.sums if self.weights[k] > 0}


def update_logprobs(
    model: torch.nn.Module, batch: TokenBatch, settings: UpdateSettings, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of a batch's response tokens as the update computes them: in its
    arithmetic (`settings.precision`) and at its temperature, the LM head scoring only the loss
    mask's tokens (not the long prompts). pi_old's recompute uses it too, so the ratio starts at 1."""
    with autocast(settings.precision, batch.input_ids.device):
        return token_logprobs(
            model,
            batch.input_ids,
            batch.attention_mask,
            settings.temperature,
            with_entropy=with_entropy,
            score_mask=batch.loss_mask,
        )


def backward_loss(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    spec: LossSpec,
    settings: UpdateSettings,
    weight: float,
    metrics: MetricSums,
    prefix: str,
    generator: torch.Generator,
    ref_model: torch.nn.Module | None = None,
) -> float:
    """Accumulate weight * aggregated loss of `samples` into .grad; return the loss value."""
    device = next(model.parameters()).device
    # Filtered samples (loss mask all 0) add no loss but count in B: no forward pass for them.
    active = [s for s in samples if any(s.loss_mask)]
    rows = micro_batch_rows(active, settings.micro_batch_size)
    batches = [
        collate_samples([active[i] for i in part], settings.pad_token_id).to(device)
        for part in rows
    ]
    norm = aggregation_norm(
        [b.loss_mask for b in batches], spec.t_norm, masked_rows=len(samples) - len(active)
    )
    selections = mini_batch_selection(
        model, batches, spec, settings, generator, *cov_collectives(), rows=rows
    )
    total = 0.0
    for batch, selected in zip(batches, selections, strict=True):
        mask = batch.loss_mask
        logp, entropy = update_logprobs(model, batch, settings, with_entropy=True)
        advantages = batch.advantages[:, None].to(logp.dtype).expand_as(logp)
        out = compute_policy_loss(
            spec.name,
            logp,
            batch.old_logprobs,
            advantages,
            mask,
            spec.params,
            generator=generator,
            selected=selected,
        )
        token_loss = out.token_loss
        if spec.params.tis_cap > 0:  # the policy term only, as verl and TRL apply it
            token_loss = token_loss * truncated_is_weights(
                batch.old_logprobs, batch.behaviour_logprobs, mask, spec.params.tis_cap
            )
        if spec.entropy_coef:
            token_loss = token_loss + entropy_bonus_term(entropy, spec.entropy_coef) * mask
        if spec.kl_coef and ref_model is not None:
            with torch.no_grad():
                ref_logp, _ = update_logprobs(ref_model, batch, settings)
            kl = low_var_kl(logp, ref_logp)
            token_loss = token_loss + spec.kl_coef * kl * mask
            out.metrics["ref_kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
        loss = aggregate_loss(token_loss, mask, spec.agg_mode, norm)
        (loss * weight).backward()
        total += float(loss.detach())
        tokens = float(mask.sum())
        out.metrics["entropy"] = float((entropy.detach() * mask).sum() / max(tokens, 1.0))
        metrics.add(prefix, out.metrics, tokens)
    return total


def micro_batch_rows(samples: Sequence[Sample], micro_batch_size: int) -> list[list[int]]:
    """The sample indices of each micro-batch (0 = one micro-batch of all).

    Split several ways, the samples are first sorted by prompt length, prompt and reply: each
    padded micro-batch then holds rows of similar length (less padding), the copies of one prompt
    (a GRPO group) stay together, so `token_logprobs` computes that prompt once, and so do the
    copies of one whole sample (episodes that played alike), which it scores once. The
    order changes no loss or gradient (the cov token choice is made in sample order, see
    `mini_batch_selection`); with one micro-batch the samples keep their order.
    """
    order = list(range(len(samples)))
    micro = micro_batch_size or max(len(samples), 1)
    if len(samples) > micro:
        order.sort(
            key=lambda i: (
                len(samples[i].prompt_ids),
                samples[i].prompt_ids,
                len(samples[i].response_ids),
                samples[i].response_ids,
            )
        )
    return [order[i : i + micro] for i in range(0, len(order), micro)]


def mini_batch_selection(
    model: torch.nn.Module,
    batches: Sequence[TokenBatch],
    spec: LossSpec,
    settings: UpdateSettings,
    generator: torch.Generator,
    reduce_sum: Collective = local_only,
    all_gather: Collective = local_only,
    rows: Sequence[Sequence[int]] | None = None,
) -> list[torch.Tensor | None]:
    """clip_cov / kl_cov: each micro-batch's slice of the tokens chosen over the whole mini-batch.

    The choice needs the current log-probs of every token of the mini-batch before any micro-batch
    is trained, so a split mini-batch first takes a no-grad forward pass (one extra forward,
    about a third of a forward+backward; only for these losses). Unsplit and in one process, the
    loss selects from its own forward pass, which gives the same tokens at no extra cost. Tokens
    are concatenated row-major in sample order (`rows[i][r]`: the sample held by row r of batch i;
    None = the batches in order), the order `select_cov_tokens` uses for a padded [B, T] batch,
    so how the samples were sorted into micro-batches does not change the choice.
    `reduce_sum` / `all_gather` (see `algos/cov_selection.py`) make the choice span all ranks'
    tokens; every rank must then call this, even with no batches of its own.
    """
    alone = reduce_sum is local_only and all_gather is local_only
    if not needs_token_selection(spec.name) or (alone and len(batches) <= 1):
        return [None] * len(batches)
    if spec.params.cov_scope == "micro_batch":  # the reference: each micro-batch picks alone
        return [None] * len(batches)
    device = next(model.parameters()).device
    if rows is None:
        starts = itertools.accumulate((len(b) for b in batches), initial=0)
        rows = [range(start, start + len(b)) for start, b in zip(starts, batches, strict=False)]
    by_sample: dict[int, tuple[torch.Tensor, ...]] = {}  # sample index -> its valid tokens
    with torch.no_grad():
        for batch, samples in zip(batches, rows, strict=True):
            logp, _ = update_logprobs(model, batch, settings)
            valid = batch.loss_mask > 0
            for row, sample in enumerate(samples):
                v = valid[row]
                adv = batch.advantages[row].to(logp.dtype).expand(int(v.sum()))
                by_sample[sample] = (logp[row][v], batch.old_logprobs[row][v], adv)
    parts = [(torch.zeros(0, device=device),) * 3] + [by_sample[i] for i in sorted(by_sample)]
    logp, old, adv = (torch.cat(column)[None] for column in zip(*parts, strict=True))
    chosen = select_cov_tokens(
        spec.name,
        logp,
        old,
        adv,
        torch.ones_like(logp),
        spec.params,
        generator,
        reduce_sum=reduce_sum,
        all_gather=all_gather,
    )[0]
    counts = [int(by_sample[i][0].numel()) for i in sorted(by_sample)]
    chosen_of = dict(zip(sorted(by_sample), torch.split(chosen, counts), strict=True))
    out: list[torch.Tensor | None] = []
    for batch, samples in zip(batches, rows, strict=True):
        valid = batch.loss_mask > 0
        selected = torch.zeros_like(valid)
        for row, sample in enumerate(samples):
            selected[row, valid[row]] = chosen_of[sample]
        out.append(selected)
    return out


def optimizer_step(model, optimizer, grad_clip: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def even_parts(items: list, max_size: int) -> list[list]:
    """Split into the fewest parts of at most `max_size` (0 = one part), sizes differing by at most 1.

    A remainder mini-batch of a few samples would get a full optimiser step from a noisy gradient.
    """
    return even_split(items, part_count(len(items), max_size))


def part_count(count: int, max_size: int) -> int:
    """How many parts `even_parts` makes of `count` items."""
    if count == 0:
        return 0
    return math.ceil(count / max_size) if max_size > 0 else 1


def even_split(items: list, count: int) -> list[list]:
    """`count` contiguous parts (some empty when there are fewer items), sizes differing by <= 1."""
    if count <= 0:
        return []
    bounds = [round(i * len(items) / count) for i in range(count + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def with_advantage(item: tuple[Sample, float]) -> Sample:
    sample, recalibrated = item
    return dataclasses.replace(sample, advantage=recalibrated)


def policy_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    samples: list[Sample],
    draw_replay: ReplayDraw | None,
    replay_coef: float,
    settings: UpdateSettings,
    generator: torch.Generator,
    ref_model: torch.nn.Module | None = None,
) -> dict[str, float]:
    """One training step's optimiser steps; returns the step's update metrics."""
    model.train()
    metrics = MetricSums()
    losses, grad_norms = [], []
    replayed = 0
    replay_seconds = 0.0  # drawing and the replay term's forward/backward: what SPEAR adds
    use_replay = draw_replay is not None and replay_coef > 0
    # Distributed: mini-batches are cut from the global batch (the ranks' samples in rank order),
    # each rank trains on the samples of each mini-batch it holds, and every rank takes the same
    # optimiser steps; the replay draw for a mini-batch is split over ranks.
    layout = global_layout(len(samples))
    for _ in range(settings.ppo_epochs):
        order = shared_permutation(layout.total, generator)
        for indices in even_parts(order, settings.mini_batch_size):
            part = [samples[i] for i in layout.local(indices)]
            with accumulate_then_sync(model, settings.pad_token_id) as module:
                loss = backward_loss(
                    module,
                    part,
                    settings.on_policy,
                    settings,
                    1.0,
                    metrics,
                    "",
                    generator,
                    ref_model,
                )
                if use_replay and settings.replay_update == "joint":
                    t_replay = time.perf_counter()
                    want = my_count(settings.replay_draw_size(len(indices)))
                    drawn = [with_advantage(x) for x in draw_replay(want)]
                    if global_sum(len(drawn)) > 0:
                        loss += replay_coef * backward_loss(
                            module,
                            drawn,
                            settings.replay,
                            settings,
                            replay_coef,
                            metrics,
                            "replay/",
                            generator,
                        )
                        replayed += len(drawn)
                    replay_seconds += time.perf_counter() - t_replay
            grad_norms.append(optimizer_step(model, optimizer, settings.grad_clip))
            losses.append(loss)
    if use_replay and settings.replay_update == "separate":
        t_replay = time.perf_counter()
        # one replay draw the size of the largest on-policy mini-batch actually taken
        whole = list(range(layout.total))
        mini = max((len(p) for p in even_parts(whole, settings.mini_batch_size)), default=1)
        drawn = [with_advantage(x) for x in draw_replay(my_count(settings.replay_draw_size(mini)))]
        steps = part_count(int(global_sum(len(drawn))), settings.mini_batch_size)
        for part in even_split(drawn, steps):
            with accumulate_then_sync(model, settings.pad_token_id) as module:
                loss = backward_loss(
                    module,
                    part,
                    settings.replay,
                    settings,
                    replay_coef,
                    metrics,
                    "replay/",
                    generator,
                )
            grad_norms.append(optimizer_step(model, optimizer, settings.grad_clip))
            losses.append(replay_coef * loss)
            replayed += len(part)
        replay_seconds += time.perf_counter() - t_replay
    out = {
        f"actor/{k}" if not k.startswith("replay/") else k: v for k, v in metrics.means().items()
    }
    out["actor/loss"] = sum(losses) / max(1, len(losses))
    out["actor/grad_norm"] = sum(grad_norms) / max(1, len(grad_norms))
    out["actor/optimizer_steps"] = float(len(grad_norms))
    out["replay/replayed"] = float(replayed)
    out["time/update_replay"] = replay_seconds
    return out
