"""Per-token policy losses (spec §4), picked by name, plus the entropy bonus and reference-KL terms.

`compute_policy_loss` validates the [B, T] inputs, neutralises masked positions (padding may hold
garbage log-probs), calls the registered loss and zeroes its output where mask == 0. Reduce the
returned `token_loss` with `aggregation.aggregate_loss`. Metrics are python floats over valid tokens.

Registered losses receive a `PolicyLossInputs` whose tensors are already safe: finite at masked
positions, advantages broadcast to [B, T], and `valid` a bool mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from spear_rl.registry import Registry

# exp(20) ~ 4.9e8 is far beyond any clip range, and keeps ratios finite in float32.
LOG_RATIO_LIMIT = 20.0
# low_var_kl's k3 value is clamped to this range for stability, as in common practice.
LOW_VAR_KL_LIMIT = 10.0


@dataclass
class PolicyLossConfig:
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip_c: float = 3.0
    clip_cov_ratio: float = 2e-4
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 2e-4
    kl_cov_coef: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.clip_low < 1:
            raise ValueError(f"clip_low must be in [0, 1), got {self.clip_low}")
        if not self.clip_high >= 0:
            raise ValueError(f"clip_high must be >= 0, got {self.clip_high}")
        if not self.dual_clip_c > 1:
            raise ValueError(f"dual_clip_c must be > 1, got {self.dual_clip_c}")
        for name in ("clip_cov_ratio", "kl_cov_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ValueError(
                f"clip_cov_lb ({self.clip_cov_lb}) must be below clip_cov_ub ({self.clip_cov_ub})"
            )
        if not self.kl_cov_coef >= 0:
            raise ValueError(f"kl_cov_coef must be >= 0, got {self.kl_cov_coef}")


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

    def log_ratio(self) -> Tensor:
        return torch.clamp(self.logp - self.old_logp, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


@dataclass
class _LossParts:
    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    selected: Tensor | None = None


PolicyLossFn = Callable[[PolicyLossInputs, PolicyLossConfig, "torch.Generator | None"], _LossParts]

POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")


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
) -> LossOutput:
    """Token losses [B, T] of the loss registered as `name`.

    `advantages` is [B, T] (or [B], broadcast over tokens); `mask` is 0/1 (float or bool).
    `generator` drives clip_cov's random token choice (global RNG when None).
    """
    loss_fn = POLICY_LOSSES.get(name)
    inp = _prepare_inputs(logp, old_logp, advantages, mask)
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
    """PPO loss; a random few unclipped tokens with lb < cov < ub get zero loss (no gradient).

    Covariance-driven clipping keeps entropy from collapsing: tokens whose log-prob moves most with
    the advantage are the ones that sharpen the policy, so a small budget of them is held back.
    """
    ppo = _ppo_clip(inp, cfg)
    cov = _token_covariance(inp)
    eligible = (
        inp.valid
        & ~ppo.clip_binds
        & ~ppo.dual_binds
        & (cov > cfg.clip_cov_lb)
        & (cov < cfg.clip_cov_ub)
    )
    budget = _token_budget(cfg.clip_cov_ratio, int(inp.valid.sum()))
    candidates = torch.nonzero(eligible.flatten(), as_tuple=False).flatten()
    if candidates.numel() > budget:
        device = generator.device if generator is not None else "cpu"
        pick = torch.randperm(candidates.numel(), generator=generator, device=device)[:budget]
        candidates = candidates[pick.to(candidates.device)]
    selected = torch.zeros(eligible.numel(), dtype=torch.bool, device=eligible.device)
    selected[candidates] = True
    selected = selected.view_as(eligible)
    loss = torch.where(selected, torch.zeros_like(ppo.loss), ppo.loss)
    metrics = {**ppo.metrics(inp.valid), "selected_tokens": float(selected.sum())}
    return _LossParts(loss, metrics, selected)


@register_policy_loss("kl_cov")
def kl_cov_loss(
    inp: PolicyLossInputs, cfg: PolicyLossConfig, generator: torch.Generator | None = None
) -> _LossParts:
    """-A * rho, plus coef * |logp - old_logp| on the top-k tokens by covariance (no clipping)."""
    log_ratio = inp.log_ratio()
    loss = -inp.advantages * torch.exp(log_ratio)
    num_valid = int(inp.valid.sum())
    k = min(_token_budget(cfg.kl_cov_ratio, num_valid), num_valid)
    cov = torch.where(inp.valid, _token_covariance(inp), torch.full_like(loss, -math.inf))
    selected = torch.zeros(loss.numel(), dtype=torch.bool, device=loss.device)
    if k > 0:
        selected[torch.topk(cov.flatten(), k).indices] = True
    selected = selected.view_as(loss)
    penalty = cfg.kl_cov_coef * log_ratio.abs()
    loss = loss + torch.where(selected, penalty, torch.zeros_like(penalty))
    return _LossParts(loss, {"selected_tokens": float(selected.sum())}, selected)


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


def _ppo_clip(inp: PolicyLossInputs, cfg: PolicyLossConfig) -> _PPOClip:
    advantages = inp.advantages
    ratio = torch.exp(inp.log_ratio())
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high)
    loss = torch.maximum(unclipped, clipped)
    # Dual clip caps the loss of negative-advantage tokens whose ratio has exploded.
    dual_cap = -advantages * cfg.dual_clip_c
    negative = advantages < 0
    dual_binds = negative & (loss > dual_cap)
    loss = torch.where(negative, torch.minimum(loss, dual_cap), loss)
    return _PPOClip(loss, ratio.detach(), (clipped > unclipped).detach(), dual_binds.detach())


def _token_covariance(inp: PolicyLossInputs) -> Tensor:
    """Detached per-token (A - mean A)(logp - mean logp) with means over valid tokens."""
    advantages, logp = inp.advantages.detach(), inp.logp.detach()
    centred_adv = advantages - masked_mean(advantages, inp.valid)
    centred_logp = logp - masked_mean(logp, inp.valid)
    return centred_adv * centred_logp


def _token_budget(ratio: float, num_valid: int) -> int:
    """max(1, floor(ratio * N)) tokens, or none when there are no valid tokens."""
    return max(1, math.floor(ratio * num_valid)) if num_valid > 0 else 0


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
