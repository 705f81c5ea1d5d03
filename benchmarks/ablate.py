"""One config key, several values, several seeds: what does that component do to the curves?

Runs a recipe once per (value, seed), with everything else equal (same seeds, tasks and SFT warm
start, shared through `sft.cache_dir`), then writes a Markdown table (mean ± std over seeds of the
first, last and mean value of each metric), JSON, and one PNG with a panel per metric.

    # SPEAR's intrinsic tool-call reward (cosine decay) vs none, on the math-with-tool env
    python benchmarks/ablate.py --recipe math/spear --key algo.toolcall_schedule --values cosine,none \\
        --metrics rollout/tool_call_rate,rollout/success_rate,eval/success_rate --seeds 0,1

Finished runs are reused (delete the folder to rerun). Extra `--section.key=value` arguments apply
to every run. `--paired-with DIR --paired-presets grpo,spear` adds, for each value, the seed-by-seed
difference of each metric's last value from runs that `benchmarks/learning.py` wrote into DIR
(`<preset>-seed<N>` folders, the same seeds, tasks and SFT starts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spear_rl.experiments.ablate import Curves, ablation_table, paired_rows, plot_ablation, run_arm
from spear_rl.experiments.tables import metric_curve
from spear_rl.train.config import deep_merge, parse_overrides
from spear_rl.train.metrics import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--key", required=True, help="dotted config key, e.g. algo.loss")
    parser.add_argument("--values", required=True, help="comma-separated, parsed as YAML")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--metrics", default="rollout/success_rate,eval/success_rate")
    parser.add_argument(
        "--out", default=None, help="default benchmarks/results/ablate_<recipe>_<key>"
    )
    parser.add_argument("--paired-with", default=None, help="a learning.py folder of runs")
    parser.add_argument("--paired-presets", default="", help="its presets to pair with")
    args, rest = parser.parse_known_args()
    extra = parse_overrides(rest)
    extra.setdefault("log", {})["progress"] = False
    values = [parse_overrides([f"--x.v={v}"])["x"]["v"] for v in args.values.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    metrics = args.metrics.split(",")
    out = Path(args.out or f"benchmarks/results/ablate_{args.recipe.replace('/', '_')}_{args.key}")
    extra = deep_merge({"sft": {"cache_dir": str(out / "sft_cache")}}, extra)

    curves: Curves = {}
    for value in values:
        for seed in seeds:
            run_dir = run_arm(args.recipe, args.key, value, seed, out, extra)
            records = read_metrics(run_dir)
            for metric in metrics:
                curves.setdefault(str(value), {}).setdefault(metric, []).append(
                    metric_curve(records, metric)
                )

    rows, table = ablation_table(curves)
    lines = [
        f"{args.recipe}, {args.key} in {args.values}, seeds {args.seeds} (mean ± std over seeds)\n"
    ]
    lines += rows
    paired: dict = {}
    if args.paired_with:
        presets = [p for p in args.paired_presets.split(",") if p]
        if not presets:
            raise SystemExit("--paired-with needs --paired-presets, e.g. grpo,drbot,spear")
        rows, paired = paired_rows(curves, metrics, seeds, Path(args.paired_with), presets)
        lines += rows
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablate.md").write_text(markdown)
    (out / "ablate.json").write_text(
        json.dumps(
            {"args": vars(args), "table": table, "paired": paired, "curves": curves}, indent=2
        )
    )
    plot_ablation(curves, metrics, out / "ablate.png", f"{args.recipe}: {args.key}")
    print(f"wrote {out / 'ablate.md'}, {out / 'ablate.json'}, {out / 'ablate.png'}")


if __name__ == "__main__":
    main()
