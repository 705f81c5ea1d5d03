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
import statistics
from pathlib import Path
from typing import Any

from spear_rl.train.config import deep_merge, load_config, parse_overrides
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train


def curve(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float(r[metric])) for r in records if metric in r]
    return [s for s, _ in points], [v for _, v in points]


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def run_arm(recipe: str, key: str, value: Any, seed: int, out: Path, extra: dict) -> Path:
    section, leaf = key.split(".", 1)
    name = f"{leaf.replace('.', '_')}={value}-seed{seed}"
    run_dir = out / name
    if not (run_dir / "result.json").exists():
        run = {"train": {"seed": seed, "run_name": name, "output_dir": str(out)}}
        overrides = deep_merge(deep_merge(extra, run), {section: _nested(leaf, value)})
        print(f"=== {key}={value} seed {seed} ===", flush=True)
        train(load_config(recipe, overrides), echo=lambda line: print(f"  {line}", flush=True))
    return run_dir


def _nested(dotted: str, value: Any) -> dict:
    *parents, leaf = dotted.split(".")
    node: dict = {leaf: value}
    for part in reversed(parents):
        node = {part: node}
    return node


def paired_rows(
    curves: dict[str, dict[str, list]],
    metrics: list[str],
    seeds: list[int],
    paired_dir: Path,
    presets: list[str],
) -> tuple[list[str], dict]:
    """Markdown rows and JSON of last(value) - last(preset), paired by seed."""
    lines = [
        "",
        f"Paired by seed with the runs in {paired_dir} (last value minus the preset's last value):",
        "",
        "| value | metric | minus | mean ± std over seeds | per seed | ahead on |",
        "|---|---|---|---|---|---|",
    ]
    table: dict = {}
    for preset in presets:
        other = [read_metrics(paired_dir / f"{preset}-seed{seed}") for seed in seeds]
        for metric in metrics:
            theirs = [curve(records, metric)[1] for records in other]
            for value, per_metric in curves.items():
                ours = [v for _, v in per_metric[metric]]
                if not all(ours) or not all(theirs):
                    continue
                diffs = [a[-1] - b[-1] for a, b in zip(ours, theirs, strict=True)]
                ahead = sum(d > 0 for d in diffs)
                per_seed = " / ".join(f"{d:+.3f}" for d in diffs)
                lines.append(
                    f"| {value} | {metric} | {preset} | {mean_std(diffs)} | {per_seed} "
                    f"| {ahead} of {len(diffs)} |"
                )
                table.setdefault(value, {}).setdefault(metric, {})[preset] = diffs
    return lines, table


def plot(curves: dict[str, dict[str, list]], metrics: list[str], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for value, per_seed in curves.items():
            runs = [c for c in per_seed[metric] if c[0]]
            if not runs:
                continue
            steps = runs[0][0]
            arr = np.array([v for s, v in runs if s == steps])
            mean, std = arr.mean(0), arr.std(0)
            ax.plot(steps, mean, marker="o", ms=2, label=value)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


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

    curves: dict[str, dict[str, list]] = {}
    for value in values:
        for seed in seeds:
            run_dir = run_arm(args.recipe, args.key, value, seed, out, extra)
            records = read_metrics(run_dir)
            for metric in metrics:
                curves.setdefault(str(value), {}).setdefault(metric, []).append(
                    curve(records, metric)
                )

    lines = [
        f"{args.recipe}, {args.key} in {args.values}, seeds {args.seeds} (mean ± std over seeds)\n",
        "| value | metric | first | last | mean over run |",
        "|---|---|---|---|---|",
    ]
    table: dict[str, dict[str, dict[str, str]]] = {}
    for value, per_metric in curves.items():
        for metric, runs in per_metric.items():
            runs = [r for r in runs if r[1]]
            row = {
                "first": mean_std([v[0] for _, v in runs]),
                "last": mean_std([v[-1] for _, v in runs]),
                "mean": mean_std([statistics.fmean(v) for _, v in runs]),
            }
            table.setdefault(value, {})[metric] = row
            lines.append(f"| {value} | {metric} | {row['first']} | {row['last']} | {row['mean']} |")
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
    plot(curves, metrics, out / "ablate.png", f"{args.recipe}: {args.key}")
    print(f"wrote {out / 'ablate.md'}, {out / 'ablate.json'}, {out / 'ablate.png'}")


if __name__ == "__main__":
    main()
