"""Cosine curricula (spec §0, §1, §6): the tool-call reward weight w(t) and the replay coefficient c(t).

`rise` goes 0 -> 1 and `decay` 1 -> 0 over `total` steps along half a cosine, then stay at their end
value. Steps are the 1-based global training step; any step works (negative steps clamp to 0).
"""

from __future__ import annotations

import math

TOOLCALL_SCHEDULES = ("none", "constant", "cosine")


def _progress(t: float, total: float) -> float:
    """Fraction of the curve covered at step t, clamped to [0, 1]."""
    return min(max(t, 0.0), total) / total


def rise(t: float, total: float) -> float:
    """`(1 - cos(pi * min(t, T) / T)) / 2`; a non-positive `total` means the curve is already done."""
    if total <= 0:
        return 1.0
    return (1.0 - math.cos(math.pi * _progress(t, total))) / 2.0


def decay(t: float, total: float) -> float:
    """`(1 + cos(pi * min(t, T) / T)) / 2`; a non-positive `total` means the curve is already done."""
    if total <= 0:
        return 0.0
    return (1.0 + math.cos(math.pi * _progress(t, total))) / 2.0


def toolcall_weight(step: int, schedule: str, total_steps: int) -> float:
    """w(t) of the intrinsic tool-call reward: none = 0, constant = 1, cosine = decay(t; T_tc)."""
    if schedule == "none":
        return 0.0
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return decay(step, total_steps)
    raise ValueError(
        f"unknown tool-call schedule {schedule!r}; choose one of: {', '.join(TOOLCALL_SCHEDULES)}"
    )


def replay_coefficient(step: int, kappa: float, warmup_steps: int) -> float:
    """c(t) = kappa * rise(t; T_rep) during warm-up, then kappa (the replay loss weight)."""
    return kappa * rise(step, warmup_steps)
