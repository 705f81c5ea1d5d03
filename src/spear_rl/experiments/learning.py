"""The learning table of `benchmarks/learning.py` (issue 32), from a `compare` report.

Per row: final held-out success, the area under the held-out curve (trapezoid over the evaluation
steps, divided by the step span: a mean success) and the steps to reach half of the best method's
final success (the first evaluation step at or above it). Against each baseline row, the three
differences paired by seed: mean ± std over the seeds both rows have, and on how many of them the
sign holds. The frozen control is a row (and can be a baseline) but never the "best method".
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from spear_rl.experiments.frozen import FROZEN
from spear_rl.experiments.tables import Paired, mean_std, paired_difference, steps_to_reach

MEASURES = {"final": "final success", "auc": "AUC", "steps_to_half": "steps to half-best"}


def learning_summary(report: dict[str, Any], baselines: list[str]) -> dict[str, Any]:
    """Rows, the half-best target, and the paired differences against each baseline present."""
    runs = report["runs"]
    methods = [p for p in runs if p != FROZEN] or list(runs)
    finals = {p: statistics.fmean(r["final_success"] for r in runs[p]) for p in methods}
    best = max(finals, key=finals.get) if finals else None
    # nobody succeeding makes half of it 0, which every curve "reaches" at step 0: say not reached
    target = finals[best] / 2 if best is not None and finals[best] > 0 else math.nan
    per_seed = {
        preset: {
            "final": {r["seed"]: r["final_success"] for r in items},
            "auc": {r["seed"]: r["auc_success"] for r in items},
            "steps_to_half": {r["seed"]: steps_to_reach(r["curve"], target) for r in items},
        }
        for preset, items in runs.items()
    }
    rows = {}
    for preset, items in runs.items():
        reach = list(per_seed[preset]["steps_to_half"].values())
        reached = [s for s in reach if not math.isnan(s)]
        late = [r["late_train_success"] for r in items if not math.isnan(r["late_train_success"])]
        rows[preset] = {
            "seeds": [r["seed"] for r in items],
            "final": mean_std(list(per_seed[preset]["final"].values())),
            "auc": mean_std(list(per_seed[preset]["auc"].values())),
            "steps_to_half": {
                "mean": statistics.fmean(reached) if reached else math.nan,
                "reached": len(reached),
                "n": len(reach),
            },
            "late_train_success": mean_std(late),
            "wall_seconds": report["table"][preset]["wall_seconds"][0],
            "per_seed": per_seed[preset],
        }
    paired: dict[str, dict[str, dict[str, Any]]] = {}
    for base in baselines:
        if base not in runs:
            continue
        paired[base] = {}
        for preset in runs:
            if preset == base:
                continue
            mine, theirs = per_seed[preset], per_seed[base]
            diffs: dict[str, Any] = {m: paired_difference(mine[m], theirs[m]) for m in MEASURES}
            reach_mine, reach_base = mine["steps_to_half"], theirs["steps_to_half"]
            common = reach_mine.keys() & reach_base.keys()
            diffs["reached_only_here"] = sum(
                1 for s in common if _hit(reach_mine[s]) and not _hit(reach_base[s])
            )
            diffs["reached_only_by_baseline"] = sum(
                1 for s in common if _hit(reach_base[s]) and not _hit(reach_mine[s])
            )
            paired[base][preset] = diffs
    return {
        "env_recipes": report["env_recipes"],
        "best_method": best,
        "best_final": finals.get(best, math.nan),
        "half_best_target": target,
        "baselines": baselines,
        "rows": rows,
        "paired": paired,
    }


def _hit(step: float) -> bool:
    return not math.isnan(step)


def learning_markdown(summary: dict[str, Any], title: str) -> str:
    rows, target = summary["rows"], summary["half_best_target"]
    if math.isnan(target):
        half = "Steps to half-best: not defined, no method succeeds at its last evaluation."
    else:
        half = (
            "Steps to half-best: the first evaluation step at or above half of the best method's "
            f"final success ({summary['best_method']}, {summary['best_final']:.3f} / 2 = "
            f"{target:.3f}); the mean over the seeds that reach it."
        )
    lines = [
        f"### {title}",
        "",
        "Held-out success on evaluation seeds the training never draws, mean ± std over seeds. "
        "AUC: trapezoid area under the held-out curve divided by the step span (a mean success). "
        + half,
        "",
        "| method | seeds | final success | AUC | steps to half-best | training success, last "
        "quarter of steps | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, row in rows.items():
        reach = row["steps_to_half"]
        steps = (
            f"{reach['mean']:.1f} ({reach['reached']}/{reach['n']} seeds)"
            if reach["reached"]
            else f"not reached (0/{reach['n']})"
        )
        seeds = ",".join(str(s) for s in row["seeds"])
        cells = [_mean_std(row["final"]), _mean_std(row["auc"]), steps]
        cells += [_mean_std(row["late_train_success"]), f"{row['wall_seconds']:.0f}"]
        lines.append(f"| {preset} | {seeds} | " + " | ".join(cells) + " |")
    for base in summary["baselines"]:
        lines += ["", *_paired_lines(summary, base)]
    return "\n".join(lines) + "\n"


def _paired_lines(summary: dict[str, Any], base: str) -> list[str]:
    if base not in summary["paired"]:
        return [f"Paired by seed against {base}: no finished run of {base} in this folder yet."]
    lines = [
        f"Paired by seed, minus {base} (mean ± std over the seeds both have; (k of n): on k of "
        "the n seeds the difference has the mean's sign; steps: over the seeds where both reach "
        "half-best):",
        "",
        "| method | " + " | ".join(f"{label} − {base}" for label in MEASURES.values()) + " |",
        "|---|---|---|---|",
    ]
    for preset, diffs in summary["paired"][base].items():
        steps = diffs["steps_to_half"].cell(digits=1)
        only = [
            f"{n} seed(s) reached only by {who}"
            for n, who in (
                (diffs["reached_only_here"], preset),
                (diffs["reached_only_by_baseline"], base),
            )
            if n
        ]
        if only:
            steps += "; " + ", ".join(only)
        cells = [diffs["final"].cell(), diffs["auc"].cell(), steps]
        lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    return lines


def _mean_std(pair: tuple[float, float]) -> str:
    mean, std = pair
    return "—" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"


def jsonable(value: Any) -> Any:
    """The summary as plain JSON: Paired as dicts, NaN as null, seed keys as strings."""
    if isinstance(value, Paired):
        return jsonable({**dataclasses.asdict(value), "n": value.n})
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
