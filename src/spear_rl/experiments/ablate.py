"""The ablation of `benchmarks/ablate.py`: one config key, several values, several seeds; its
runs, its table (first, last and mean of each metric over seeds), the columns paired by seed with
`benchmarks/learning.py`'s runs, and its plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from spear_rl.experiments.tables import format_mean_std, metric_curve
from spear_rl.train.config import deep_merge, load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

# value -> metric -> one (steps, values) curve per seed
Curves = dict[str, dict[str, list[tuple[list[int], list[float]]]]]


def run_arm(recipe: str, key: str, value: Any, seed: int, out: Path, extra: dict) -> Path:
    """Train `recipe` with `key=value` on `seed` into `out` unless that run finished before."""
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


def ablation_table(curves: Curves) -> tuple[list[str], dict[str, dict[str, dict[str, str]]]]:
    """Markdown rows and JSON of each value's first, last and mean value of each metric, as
    mean ± std over seeds."""
    lines = ["| value | metric | first | last | mean over run |", "|---|---|---|---|---|"]
    table: dict[str, dict[str, dict[str, str]]] = {}
    for value, per_metric in curves.items():
        for metric, runs in per_metric.items():
            runs = [r for r in runs if r[1]]
            row = {
                "first": format_mean_std([v[0] for _, v in runs]),
                "last": format_mean_std([v[-1] for _, v in runs]),
                "mean": format_mean_std([statistics.fmean(v) for _, v in runs]),
            }
            table.setdefault(value, {})[metric] = row
            lines.append(f"| {value} | {metric} | {row['first']} | {row['last']} | {row['mean']} |")
    return lines, table


def paired_rows(
    curves: Curves,
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
            theirs = [metric_curve(records, metric)[1] for records in other]
            for value, per_metric in curves.items():
                ours = [v for _, v in per_metric[metric]]
                if not all(ours) or not all(theirs):
                    continue
                diffs = [a[-1] - b[-1] for a, b in zip(ours, theirs, strict=True)]
                ahead = sum(d > 0 for d in diffs)
                per_seed = " / ".join(f"{d:+.3f}" for d in diffs)
                lines.append(
                    f"| {value} | {metric} | {preset} | {format_mean_std(diffs)} | {per_seed} "
                    f"| {ahead} of {len(diffs)} |"
                )
                table.setdefault(value, {}).setdefault(metric, {})[preset] = diffs
    return lines, table


def plot_ablation(curves: Curves, metrics: list[str], out: Path, title: str) -> None:
    """One panel per metric: each value's mean curve over seeds with a ±std band."""
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
