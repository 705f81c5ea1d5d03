"""Does SPEAR learn faster? Every preset x seed on each environment, same step budget and task sets.

For each environment it runs the presets through `spear_rl.train.compare.compare` (resumable:
finished runs are reused), then writes a Markdown table and JSON with the mean ± std over seeds of
final held-out success, area under the success curve, and the number of steps each method needs
to reach the GRPO baseline's mean final success, plus overlaid curves (PNG).

    python benchmarks/learning.py --envs sokoban --presets grpo,drbot,spear --seeds 0,1,2
    python benchmarks/learning.py --envs sokoban,alfworld --presets grpo,drbot,spear,gigpo,drbot-gigpo,spear-gigpo
    python benchmarks/learning.py --envs sokoban --presets drbot,spear,frozen --baseline drbot
    python benchmarks/learning.py --envs sokoban --presets grpo,drbot,spear,frozen --baseline grpo,drbot

`frozen` (the warm start, evaluated at the same steps with the same seeds, never trained) adds the
column "final - frozen": what training changed, seed by seed, next to what sampling alone moves.

Held-out success is measured on evaluation seeds the training never draws; nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from spear_rl.train.compare import compare, mean_std
from spear_rl.train.config import parse_overrides
from spear_rl.train.frozen import FROZEN
from spear_rl.train.metrics import read_metrics


def steps_to_reach(curve: dict[str, list], target: float) -> float:
    for step, value in zip(curve["steps"], curve["success"], strict=True):
        if value >= target:
            return float(step)
    return float("nan")  # never reached within the budget


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


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> tuple[float, float]:
    """Mean ± std over seeds of value - baseline on the same seed (same warm start and tasks)."""
    return mean_std([v - baseline.get(seed, float("nan")) for seed, v in values.items()])


def learning_table(report: dict[str, Any], baselines: list[str]) -> tuple[str, dict[str, Any]]:
    """One row per method; "steps to reach" uses the first baseline's mean final success, and
    each baseline gets paired "minus baseline" columns for final and late training success."""
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="sokoban")
    parser.add_argument("--presets", default="grpo,drbot,spear")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--baseline",
        default="grpo",
        help="comma-separated presets to compare against, seed by seed (the first sets "
        "'steps to reach')",
    )
    parser.add_argument("--out", default="benchmarks/results/learning")
    args, rest = parser.parse_known_args(argv)
    overrides = {**parse_overrides(rest), "log": {"progress": False}}
    presets = args.presets.split(",")
    baselines = args.baseline.split(",")
    missing = [b for b in baselines if b not in presets]
    if missing:
        parser.error(f"--baseline {','.join(missing)} is not among --presets {args.presets}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    summary: dict[str, Any] = {}
    markdown = []
    for env in args.envs.split(","):
        report = compare(env, presets, seeds, out / env, overrides)
        table, rows = learning_table(report, baselines)
        summary[env] = {"rows": rows, "runs": report["runs"]}
        markdown.append(
            f"### {env} ({len(seeds)} seeds; curves: {out / env / 'compare.png'})\n\n{table}"
        )
        print(markdown[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.md").write_text("\n".join(markdown))
    (out / "learning.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'learning.md'} and {out / 'learning.json'}")


if __name__ == "__main__":
    main()
