"""Timing two implementations A and B fairly on a loaded machine: interleaved pairs.

Load on a shared machine drifts over minutes, so one run of A followed by one run of B measures the
drift as much as A and B (swapping the order once flipped 1.22x into 0.86x). Instead A and B run
in pairs, one right after the other, and the side that goes first alternates pair by pair; each
pair gives one ratio B / A taken under nearly the same load, and the summary is the median ratio
with its min-max range over the pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pair_orders(pairs: int, sides: tuple[str, str], offset: int = 0) -> list[tuple[str, str]]:
    """The order of the two sides in each pair: the first side leads in even pairs (counted from
    `offset`, so two interleaved benchmarks can start with different sides)."""
    a, b = sides
    return [(a, b) if (i + offset) % 2 == 0 else (b, a) for i in range(pairs)]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (NaN for no values)."""
    if not values:
        nan = float("nan")
        return {"median": nan, "min": nan, "max": nan, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """numerator / denominator pair by pair (e.g. the other side's seconds / ours: our speed-up)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def format_spread(stats: dict[str, float], digits: int = 2, unit: str = "") -> str:
    """`1.52x (1.31-1.70)`: the median and its min-max range."""
    m, lo, hi = stats["median"], stats["min"], stats["max"]
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"
