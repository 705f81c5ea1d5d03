"""Statistics the experiment tables share: mean ± std over seeds, differences paired by seed, a
metric's curve out of a run's records, and the steps a curve needs to reach a target."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

NAN = float("nan")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value); NaN for both when there are no values or any value
    is NaN (statistics.stdev raises on NaN, and one missing seed must not look like a number)."""
    if not values or any(v != v for v in values):
        return NAN, NAN
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(values: Sequence[float]) -> str:
    """`mean ± std` to three decimals, `n/a` for no values."""
    if not values:
        return "n/a"
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> tuple[float, float]:
    """Mean ± std over seeds of value - baseline on the same seed (same warm start and tasks); NaN
    when a seed has no baseline."""
    return mean_std([v - baseline.get(seed, NAN) for seed, v in values.items()])


def metric_curve(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `metric` in a run's metric records, in record order."""
    points = [(r["step"], float(r[metric])) for r in records if metric in r]
    return [step for step, _ in points], [value for _, value in points]


def steps_to_reach(curve: dict[str, list], target: float) -> float:
    """The first step whose success reaches `target`; NaN if none does within the budget."""
    for step, value in zip(curve["steps"], curve["success"], strict=True):
        if value >= target:
            return float(step)
    return NAN
