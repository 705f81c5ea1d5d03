"""The learning table of `benchmarks/learning.py`: per method, final and late-training success,
each also minus the frozen control and minus the baselines paired by seed, AUC, and the steps to
reach the first baseline's mean final success."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from spear_rl.experiments.frozen import FROZEN
from spear_rl.experiments.tables import mean_std, paired_difference, steps_to_reach
from spear_rl.train.metrics import read_metrics


def late_training_success(run_dir: str) -> float:
    """Mean training-rollout success over the last quarter of the steps. Every method of a seed
    draws the same training tasks at each step, so this compares methods on the same episodes'
    tasks, 64 x steps/4 of them, a larger sample than one evaluation."""
    values = [
        r["rollout/success_rate"]
        for r in read_metrics(Path(run_dir))
        if "rollout/success_rate" in r
    ]
    tail = values[-max(1, len(values) // 4) :]
    return statistics.fmean(tail) if tail else float("nan")


def learning_table(report: dict[str, Any], baselines: list[str]) -> tuple[str, dict[str, Any]]:
    """One row per method of a `compare` report; "steps to reach" uses the first baseline's mean
    final success, and each baseline gets paired "minus baseline" columns for final and late
    training success. Returns the Markdown table and the rows."""
    runs = report["runs"]
    first = baselines[0]
    target = (
        statistics.fmean(r["final_success"] for r in runs[first]) if first in runs else float("nan")
    )
    final = {p: {r["seed"]: r["final_success"] for r in items} for p, items in runs.items()}
    late = {
        preset: {r["seed"]: late_training_success(r["run_dir"]) for r in items}
        for preset, items in runs.items()
    }
    rows = {}
    for preset, items in runs.items():
        reach = [steps_to_reach(r["curve"], target) for r in items]
        reached = [s for s in reach if s == s]
        row = {
            "final": report["table"][preset]["final_success"],
            # paired by seed: the same warm start and evaluation seeds, trained or not
            "final_minus_frozen": paired_difference(final[preset], final.get(FROZEN, {})),
            "auc": report["table"][preset]["auc_success"],
            "late_train_success": mean_std(list(late[preset].values())),
        }
        for base in baselines:
            row[f"final_minus_{base}"] = paired_difference(final[preset], final.get(base, {}))
            # paired by seed: the same training tasks at every step
            row[f"late_train_minus_{base}"] = paired_difference(late[preset], late.get(base, {}))
        row["steps_to_baseline"] = (
            statistics.fmean(reached) if reached else float("nan"),
            len(reached),
            len(reach),
        )
        row["wall"] = report["table"][preset]["wall_seconds"]
        rows[preset] = row
    columns = {
        "final": "final success",
        "final_minus_frozen": "final - frozen (same seed)",
        **{f"final_minus_{b}": f"final - {b} (same seed)" for b in baselines},
        "auc": "AUC success",
        "late_train_success": "training success, last quarter of steps",
        **{f"late_train_minus_{b}": f"same, minus {b} (same seed)" for b in baselines},
    }
    lines = [
        "| method | "
        + " | ".join(columns.values())
        + f" | steps to reach {first} final ({target:.3f}) | wall (s) |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for preset, row in rows.items():
        cells = [f"{m:.3f} ± {s:.3f}" if m == m else "—" for m, s in (row[k] for k in columns)]
        sm, n_ok, n = row["steps_to_baseline"]
        reach = f"{sm:.1f} ({n_ok}/{n} seeds)" if n_ok else f"not reached (0/{n})"
        lines.append(f"| {preset} | " + " | ".join(cells) + f" | {reach} | {row['wall'][0]:.0f} |")
    return "\n".join(lines) + "\n", rows
