"""Per-token policy losses (spec §4), picked by name, plus the entropy bonus and reference-KL terms.

`compute_policy_loss` validates the [B, T] inputs, neutralises masked positions (padding may hold
garbage log-probs), calls the registered loss and zeroes its output where mask == 0. Reduce the
returned `token_loss` with `aggregation.aggregate_loss`. Metrics are python floats over valid tokens.

Registered losses receive a `PolicyLossInputs` whose tensors are already safe: finite at masked
positions, advantages broadcast to [B, T], and `valid` a bool mask.

clip_cov and kl_cov act on a budget of tokens chosen over a whole mini-batch
(`select_cov_tokens`, built on `cov_selection.py`). A caller that splits a mini-batch into
micro-batches selects once over the mini-batch and passes each micro-batch its slice as
`selected`; without it, the selection runs over the tensors given (correct when they are the
whole mini-batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from spear_rl.algos.aggregation import AGG_MODES
from spear_rl.algos.cov_selection import (
    Collective,
    local_only,
    random_keys,
    token_budget,
    token_covariance,
    top_k_mask,
)
from spear_rl.fields import ConfigError, Settings, setting
from spear_rl.registry import Registry

# exp(20) ~ 4.9e8 is far beyond any clip range, and keeps ratios finite in float32.
LOG_RATIO_LIMIT = 20.0
# low_var_kl's k3 value is clamped to this range for stability, as in common practice.
LOW_VAR_KL_LIMIT = 10.0

POLICY_LOSSES: Registry = Registry("policy loss")
# Where clip_cov / kl_cov count N and pick their tokens: the whole mini-batch (spec §4), or each
# micro-batch on its own (the reference, whose choice then depends on the micro-batch size).
COV_SCOPES = ("mini_batch", "micro_batch")


@dataclass
class PolicyLossConfig(Settings):
    """Policy-loss settings: the `algo` section's loss and aggregation keys (spec §4, §5)."""

    section = "algo"

    loss: str = setting("clip_cov", "per-token policy loss", choices=POLICY_LOSSES)
    clip_low: float = setting(0.2, "ratio clipped below 1 - clip_low", ge=0, lt=1)
    clip_high: float = setting(0.28, "clip-higher: ratio clipped above 1 + clip_high", ge=0)
    dual_clip_c: float = setting(3.0, "dual clip for negative advantages: loss <= -c * A", gt=1)
    clip_cov_ratio: float = setting(2e-4, "share of tokens clip_cov detaches", ge=0, le=1)
    clip_cov_lb: float = setting(1.0, "clip_cov picks tokens with clip_cov_lb < cov < clip_cov_ub")
    clip_cov_ub: float = setting(5.0, "upper covariance bound of clip_cov's pick")
    kl_cov_ratio: float = setting(
        2e-4, "share of top-covariance tokens kl_cov penalises", ge=0, le=1
    )
    kl_cov_coef: float = setting(0.1, "beta of the kl_cov penalty", ge=0)
    cov_scope: str = setting(
        "mini_batch",
        "where clip_cov / kl_cov take N and pick tokens: the whole mini-batch (spec), or each "
        "micro-batch alone (micro_batch, the reference: the choice depends on the micro-batch size)",
        choices=COV_SCOPES,
    )
    clip_cov_dual_clip: bool = setting(
        True,
        "clip_cov applies the dual clip and never picks a dual-clipped token (the reference: no)",
    )
    cov_log_ratio_clamp: bool = setting(
        True,
        "clip_cov / kl_cov clamp logp - old_logp to +-20 before exp, as vanilla does (the "
        "reference: unclamped, so an extreme ratio can give inf losses)",
    )
    loss_agg: str = setting(
        "seq-mean-token-sum-norm",
        "how token losses reduce to one number (spec §5)",
        choices=AGG_MODES,
    )
    loss_agg_t_norm: int = setting(
        0, "T_norm of seq-mean-token-sum-norm; 0 = the layout's max response length", ge=0
    )
    entropy_coef: float = setting(0.0, "entropy bonus c_H", ge=0)
    kl_coef: float = setting(0.0, "> 0 keeps a frozen reference model (low_var_kl)", ge=0)
    tis_cap: float = setting(
        0.0,
        "truncated importance sampling for the engine/trainer mismatch: each token's policy loss "
        "times min(pi_old / pi_engine, tis_cap) (algos/tis.py); 0 = off",
        ge=0,
    )

    def check(self) -> None:
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ConfigError(
                f"clip_cov_lb ({self.clip_cov_lb}) must be below clip_cov_ub ({self.clip_cov_ub})"
            )


@dataclass
class LossOutput:
    token_loss: Tensor  # [B, T], zero where mask == 0; aggregate with aggregation.py
    # clip_frac_low, clip_frac_high, dual_clip_frac, approx_kl, selected_tokens, valid_tokens
    metrics: dict[str, float]
    selected: Tensor | None = field(default=None, repr=False)  # [B, T] bool, clip_cov / kl_cov


@dataclass
class PolicyLossInputs:
    """What a registered loss receives: [B, T] tensors, safe at masked positions."""

    logp: Tensor
    old_logp: Tensor
    advantages: Tensor
    valid: Tensor  # bool
    # [B, T] bool: the tokens clip_cov / kl_cov act on, chosen over the whole mini-batch
    selected: Tensor | None = None

    def log_ratio(self, clamp: bool = True) -> Tensor:
        """logp - old_logp, clamped to +-LOG_RATIO_LIMIT unless `clamp` is False."""
        log_ratio = self.logp - self.old_logp
        return torch.clamp(log_ratio, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT) if clamp else log_ratio


@dataclass
class _LossParts:
    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    selected: Tensor | None = None


PolicyLossFn = Callable[
    ["PolicyLossInputs", "PolicyLossConfig", "torch.Generator | None"], "_LossParts"
]


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator: `@register_policy_loss("clip_cov")` makes the loss selectable by that name."""
    return POLICY_LOSSES.register(name)


def compute_policy_loss(
    name: str,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: PolicyLossConfig,
    generator: torch.Generator | None = None,
    selected: Tensor | None = None,
) -> LossOutput:
    """Token losses [B, T] of the loss registered as `name`.

    `advantages` is [B, T] (or [B], broadcast over tokens); `mask` is 0/1 (float or bool).
    `selected` ([B, T] bool): clip_cov / kl_cov's tokens, chosen by `select_cov_tokens` over the
    whole mini-batch; None selects over these tensors alone, with `generator` driving clip_cov's
    random choice (global RNG when None).
    """
    loss_fn = POLICY_LOSSES.get(name)
    inp = _prepare_inputs(logp, old_logp, advantages, mask)
    if name in COV_SELECTORS:
        if selected is None:
            selected = COV_SELECTORS[name](inp, cfg, generator, local_only, local_only)
        elif selected.shape != inp.valid.shape:
            raise ValueError(
                f"selected must have logp's shape {tuple(inp.valid.shape)}, "
                f"got {tuple(selected.shape)}"
            )
        inp.selected = selected.to(torch.bool) & inp.valid
    parts = loss_fn(inp, cfg, generator)
    token_loss = torch.where(inp.valid, parts.loss, torch.zeros_like(parts.loss))
    metrics = {
        "clip_frac_low": 0.0,
        "clip_frac_high": 0.0,
        "dual_clip_frac": 0.0,
        "selected_tokens": 0.0,
        **parts.metrics,
        "approx_kl": _approx_kl(inp),
        "valid_tokens": float(inp.valid.sum()),
    }
    return LossOutput(token_loss=token_loss, metrics=metrics, selected=parts.selected)


# --- losses -----------------------------------------------------------------------------------


@register_policy_loss("vanilla")
def vanilla_loss(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, generator: torch.Generator | None = None
) -> _LossParts:
    """PPO clip with clip-higher (1 - clip_low, 1 + clip_high) and dual clip for A < 0."""
    ppo = _ppo_clip(inp, cfg)
    return _LossParts(ppo.loss, ppo.metrics(inp.valid))


@register_policy_loss("clip_cov")
def clip_cov_loss(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, generator: torch.Generator | None = None
) -> _LossParts:
    """PPO loss; the selected tokens (a random few unclipped ones with lb < cov < ub) get zero loss.

    Covariance-driven clipping keeps entropy from collapsing: tokens whose log-prob moves most with
    the advantage are the ones that sharpen the policy, so a small budget of them is held back.
    """
    ppo = _ppo_clip(inp, cfg, clamp=cfg.cov_log_ratio_clamp, dual=cfg.clip_cov_dual_clip)
    selected = _given_selection(inp)
    loss = torch.where(selected, torch.zeros_like(ppo.loss), ppo.loss)
    metrics = {**ppo.metrics(inp.valid), "selected_tokens": float(selected.sum())}
    return _LossParts(loss, metrics, selected)


@register_policy_loss("kl_cov")
def kl_cov_loss(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, generator: torch.Generator | None = None
) -> _LossParts:
    """-A * rho, plus coef * |logp - old_logp| on the selected (top-k by cov) tokens; no clipping."""
    log_ratio = inp.log_ratio(clamp=cfg.cov_log_ratio_clamp)
    loss = -inp.advantages * torch.exp(log_ratio)
    selected = _given_selection(inp)
    penalty = cfg.kl_cov_coef * log_ratio.abs()
    loss = loss + torch.where(selected, penalty, torch.zeros_like(penalty))
    return _LossParts(loss, {"selected_tokens": float(selected.sum())}, selected)


def _given_selection(inp: PolicyLossInputs) -> Tensor:
    if inp.selected is None:
        raise ValueError("clip_cov / kl_cov need a token selection: call compute_policy_loss")
    return inp.selected


# --- token selection for clip_cov / kl_cov (over a whole mini-batch) ---------------------------

SelectFn = Callable[
    [PolicyLossInputs, PolicyLossConfig, "torch.Generator | None", Collective, Collective], Tensor
]


def _select_clip_cov(
    inp: PolicyLossInputs,
    cfg: PolicyLossConfig,
    generator: torch.Generator | None,
    reduce_sum: Collective,
    all_gather: Collective,
) -> Tensor:
    """max(1, floor(r N)) tokens uniformly at random among the unclipped with lb < cov < ub."""
    ppo = _ppo_clip(inp, cfg, clamp=cfg.cov_log_ratio_clamp, dual=cfg.clip_cov_dual_clip)
    valid = inp.valid
    cov, num_valid = token_covariance(inp.advantages[valid], inp.logp[valid], reduce_sum)
    unclipped = ~ppo.clip_binds[valid] & ~ppo.dual_binds[valid]
    eligible = unclipped & (cov > cfg.clip_cov_lb) & (cov < cfg.clip_cov_ub)
    score = torch.full_like(cov, -math.inf)
    score[eligible] = random_keys(int(eligible.sum()), generator, cov.device)
    chosen = top_k_mask(score, eligible, token_budget(cfg.clip_cov_ratio, num_valid), all_gather)
    return _scatter_valid(chosen, valid)


def _select_kl_cov(
    inp: PolicyLossInputs,
    cfg: PolicyLossConfig,
    generator: torch.Generator | None,
    reduce_sum: Collective,
    all_gather: Collective,
) -> Tensor:
    """The top max(1, floor(r N)) tokens by cov (all of them when N is smaller)."""
    valid = inp.valid
    cov, num_valid = token_covariance(inp.advantages[valid], inp.logp[valid], reduce_sum)
    k = min(token_budget(cfg.kl_cov_ratio, num_valid), num_valid)
    chosen = top_k_mask(cov, torch.ones_like(cov, dtype=torch.bool), k, all_gather)
    return _scatter_valid(chosen, valid)


# Losses whose tokens are chosen over the whole mini-batch, and how.
COV_SELECTORS: dict[str, SelectFn] = {"clip_cov": _select_clip_cov, "kl_cov": _select_kl_cov}


def needs_token_selection(name: str) -> bool:
    """True for losses (clip_cov, kl_cov) whose token choice spans the whole mini-batch."""
    return name in COV_SELECTORS


def select_cov_tokens(
    name: str,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    cfg: PolicyLossConfig,
    generator: torch.Generator | None = None,
    reduce_sum: Collective = local_only,
    all_gather: Collective = local_only,
) -> Tensor:
    """[B, T] bool: the tokens loss `name` acts on, chosen over all these tokens (all ranks').

    Pass the whole mini-batch's CURRENT log-probs (detached is fine), behaviour log-probs,
    advantages and mask. Valid tokens are taken row-major, so a [1, N] concatenation of the
    micro-batches' valid tokens gives the same choice as the padded [B, T] mini-batch.
    `reduce_sum` / `all_gather` are the cross-rank hooks of `cov_selection.py`.
    """
    if name not in COV_SELECTORS:
        known = ", ".join(COV_SELECTORS)
        raise ValueError(f"loss {name!r} selects no tokens; only {known} do")
    inp = _prepare_inputs(logp.detach(), old_logp, advantages, mask)
    return COV_SELECTORS[name](inp, cfg, generator, reduce_sum, all_gather)


def _scatter_valid(chosen: Tensor, valid: Tensor) -> Tensor:
    """A 1-D choice over the valid tokens (row-major) back to the [B, T] layout."""
    out = torch.zeros_like(valid)
    out[valid] = chosen
    return out


@register_policy_loss("gpg")
def gpg_loss(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, generator: torch.Generator | None = None
) -> _LossParts:
    """Plain policy gradient: -A * logp (no ratio, no clipping)."""
    return _LossParts(-inp.advantages * inp.logp)


# --- extra loss terms -------------------------------------------------------------------------


def entropy_bonus_term(entropy: Tensor, coef: float) -> Tensor:
    """[B, T] term to ADD to token_loss: -coef * entropy (rewards keeping the policy broad)."""
    return -coef * entropy


def low_var_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimate of KL(pi || pi_ref) per token: r - log r - 1 with r = pi_ref / pi, clamped."""
    log_r = torch.clamp(ref_logp - logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    kl = torch.exp(log_r) - log_r - 1
    return torch.clamp(kl, -LOW_VAR_KL_LIMIT, LOW_VAR_KL_LIMIT)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over positions where mask > 0 (0 when nothing is valid; garbage elsewhere ignored)."""
    valid = mask > 0
    weights = mask.to(x.dtype) if mask.dtype != torch.bool else valid.to(x.dtype)
    total = torch.where(valid, x * weights, torch.zeros_like(x)).sum()
    count = torch.where(valid, weights, torch.zeros_like(weights)).sum()
    return total / torch.where(count > 0, count, torch.ones_like(count))


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class _PPOClip:
    loss: Tensor
    ratio: Tensor
    clip_binds: Tensor  # the ratio clip is active: the token gets no gradient from it
    dual_binds: Tensor  # the dual clip (A < 0) is active

    def metrics(self, valid: Tensor) -> dict[str, float]:
        return {
            "clip_frac_low": _fraction(self.clip_binds & (self.ratio < 1), valid),
            "clip_frac_high": _fraction(self.clip_binds & (self.ratio > 1), valid),
            "dual_clip_frac": _fraction(self.dual_binds, valid),
        }


def _ppo_clip(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, clamp: bool = True, dual: bool = True
) -> _PPOClip:
    advantages = inp.advantages
    ratio = torch.exp(inp.log_ratio(clamp=clamp))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high)
    loss = torch.maximum(unclipped, clipped)
    # Dual clip caps the loss of negative-advantage tokens whose ratio has exploded.
    dual_cap = -advantages * cfg.dual_clip_c
    negative = advantages < 0
    if not dual:
        negative = torch.zeros_like(negative)
    dual_binds = negative & (loss > dual_cap)
    loss = torch.where(negative, torch.minimum(loss, dual_cap), loss)
    return _PPOClip(loss, ratio.detach(), (clipped > unclipped).detach(), dual_binds.detach())


def _approx_kl(inp: PolicyLossInputs) -> float:
    """Mean k3 estimate of KL(pi_old || pi) over valid tokens: rho - 1 - log rho."""
    log_ratio = inp.log_ratio().detach()
    return float(masked_mean(torch.exp(log_ratio) - 1 - log_ratio, inp.valid))


def _fraction(flags: Tensor, valid: Tensor) -> float:
    return float((flags & valid).sum()) / max(int(valid.sum()), 1)


def _prepare_inputs(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor
) -> PolicyLossInputs:
    if logp.dim() != 2:
        raise ValueError(f"logp must be [B, T], got shape {tuple(logp.shape)}")
    shape = logp.shape
    if advantages.dim() == 1 and advantages.shape[0] == shape[0]:
        advantages = advantages[:, None].expand(shape)
    for name, x in (("old_logp", old_logp), ("advantages", advantages), ("mask", mask)):
        if x.shape != shape:
            raise ValueError(f"{name} must have logp's shape {tuple(shape)}, got {tuple(x.shape)}")
    valid = mask > 0
    # Padding may hold -inf/NaN log-probs; replace them so neither values nor gradients see them.
    zeros = torch.zeros_like(logp)
    return PolicyLossInputs(
        logp=torch.where(valid, logp, zeros),
        old_logp=torch.where(valid, old_logp.detach().to(logp.dtype), zeros),
        advantages=torch.where(valid, advantages.detach().to(logp.dtype), zeros),
        valid=valid,
    )
