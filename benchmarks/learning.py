"""Does SPEAR learn faster? Every preset x seed on each environment, same step budget and task sets.

For each environment it runs the presets through `spear_rl.experiments.compare.compare` (resumable:
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
from pathlib import Path
from typing import Any

from spear_rl.experiments.compare import compare
from spear_rl.experiments.learning import learning_table
from spear_rl.train.config import parse_overrides


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
