"""Statistics the experiment tables share: mean ± std over seeds, differences paired by seed (with
on how many seeds their sign holds), a metric's curve out of a run's records, the area under a
curve and the steps a curve needs to reach a target."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass
class Paired:
    """value - baseline on the seeds both have a number for (same warm start and tasks)."""

    mean: float
    std: float
    per_seed: dict[int, float]
    sign_holds: int  # seeds whose difference has the mean's sign (zero counts for a zero mean)

    @property
    def n(self) -> int:
        return len(self.per_seed)

    def cell(self, digits: int = 3) -> str:
        """`+0.023 ± 0.010 (5 of 5)`: mean ± std, and on how many seeds the sign holds."""
        if not self.per_seed:
            return "—"
        return f"{self.mean:+.{digits}f} ± {self.std:.{digits}f} ({self.sign_holds} of {self.n})"


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Differences seed by seed; a seed missing, or NaN, on either side is left out (so a
    baseline seed still running, or a curve that never reached a target, pairs nothing)."""
    per_seed = {
        seed: v - baseline[seed]
        for seed, v in sorted(values.items())
        if seed in baseline and not math.isnan(v) and not math.isnan(baseline[seed])
    }
    mean, std = mean_std(list(per_seed.values()))
    holds = sum(1 for d in per_seed.values() if _sign(d) == _sign(mean))
    return Paired(mean, std, per_seed, holds)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def metric_curve(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `metric` in a run's metric records, in record order."""
    points = [(r["step"], float(r[metric])) for r in records if metric in r]
    return [step for step, _ in points], [value for _, value in points]


def area_under_curve(steps: Sequence[int], values: Sequence[float]) -> float:
    """Trapezoid area under the curve, divided by the step span: a mean over the run (a single
    point is its own mean; no point is NaN)."""
    if len(steps) < 2:
        return float(values[0]) if values else NAN
    area = sum(
        (steps[i + 1] - steps[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(steps) - 1)
    )
    return area / (steps[-1] - steps[0])


def steps_to_reach(curve: dict[str, list], target: float) -> float:
    """The first step whose success reaches `target`; NaN if none does within the budget."""
    for step, value in zip(curve["steps"], curve["success"], strict=True):
        if value >= target:
            return float(step)
    return NAN
