"""Does SPEAR learn faster? Every preset x seed on each environment, same step budget and task sets.

For each environment it runs the presets through `spear_rl.train.compare.compare` (resumable:
finished runs are reused), then writes a Markdown table and JSON with the mean ± std over seeds of
final held-out success, area under the success curve, and the number of steps each method needs
to reach the GRPO baseline's mean final success, plus overlaid curves (PNG).

    python benchmarks/learning.py --envs sokoban --presets grpo,drbot,spear --seeds 0,1,2
    python benchmarks/learning.py --envs sokoban,alfworld --presets grpo,drbot,spear,gigpo,drbot-gigpo,spear-gigpo

Held-out success is measured on evaluation seeds the training never draws; nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from spear_rl.train.compare import compare
from spear_rl.train.config import parse_overrides


def steps_to_reach(curve: dict[str, list], target: float) -> float:
    for step, value in zip(curve["steps"], curve["success"], strict=True):
        if value >= target:
            return float(step)
    return float("nan")  # never reached within the budget


def learning_table(report: dict[str, Any], baseline: str) -> tuple[str, dict[str, Any]]:
    runs = report["runs"]
    target = (
        statistics.fmean(r["final_success"] for r in runs[baseline])
        if baseline in runs
        else float("nan")
    )
    rows = {}
    for preset, items in runs.items():
        reach = [steps_to_reach(r["curve"], target) for r in items]
        reached = [s for s in reach if s == s]
        rows[preset] = {
            "final": report["table"][preset]["final_success"],
            "auc": report["table"][preset]["auc_success"],
            "steps_to_baseline": (
                statistics.fmean(reached) if reached else float("nan"),
                len(reached),
                len(reach),
            ),
            "wall": report["table"][preset]["wall_seconds"],
        }
    lines = [
        f"| method | final success | AUC success | steps to reach {baseline} final ({target:.3f}) | wall (s) |",
        "|---|---|---|---|---|",
    ]
    for preset, row in rows.items():
        (fm, fs), (am, as_), (sm, n_ok, n), (wm, _) = (
            row["final"],
            row["auc"],
            row["steps_to_baseline"],
            row["wall"],
        )
        reach = f"{sm:.1f} ({n_ok}/{n} seeds)" if n_ok else f"not reached (0/{n})"
        lines.append(
            f"| {preset} | {fm:.3f} ± {fs:.3f} | {am:.3f} ± {as_:.3f} | {reach} | {wm:.0f} |"
        )
    return "\n".join(lines) + "\n", rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="sokoban")
    parser.add_argument("--presets", default="grpo,drbot,spear")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--baseline", default="grpo")
    parser.add_argument("--out", default="benchmarks/results/learning")
    args, rest = parser.parse_known_args()
    overrides = {**parse_overrides(rest), "log": {"progress": False}}
    presets = args.presets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    summary: dict[str, Any] = {}
    markdown = []
    for env in args.envs.split(","):
        report = compare(env, presets, seeds, out / env, overrides)
        table, rows = learning_table(report, args.baseline)
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
