"""`spear compare`: presets x seeds on one environment's recipes, one table and overlaid curves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spear_rl.experiments.frozen import FROZEN, run_frozen
from spear_rl.experiments.tables import mean_std, metric_curve
from spear_rl.train.config import deep_merge, load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train


def eval_curve(records: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, held-out success) of a run's evaluations."""
    return metric_curve(records, "eval/success_rate")


def area_under_curve(steps: list[int], values: list[float]) -> float:
    """Trapezoid area under the success curve, divided by the step span (a mean success)."""
    if len(steps) < 2:
        return values[0] if values else float("nan")
    area = sum(
        (steps[i + 1] - steps[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(steps) - 1)
    )
    return area / (steps[-1] - steps[0])


def summarise_run(run_dir: Path) -> dict[str, Any]:
    steps, success = eval_curve(read_metrics(run_dir))
    result = json.loads((run_dir / "result.json").read_text())
    return {
        "final_success": success[-1] if success else float("nan"),
        "best_success": max(success) if success else float("nan"),
        "auc_success": area_under_curve(steps, success),
        "wall_seconds": result["wall_seconds"],
        "curve": {"steps": steps, "success": success},
    }


def compare(
    env_recipes: str,
    presets: list[str],
    seeds: list[int],
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    # presets on one seed usually share the SFT warm start: do it once per seed
    if "cache_dir" not in (overrides or {}).get("sft", {}):
        overrides = deep_merge(overrides or {}, {"sft": {"cache_dir": str(out_dir / "sft_cache")}})
    trained = [p for p in presets if p != FROZEN] or ["_base"]
    # every config is built (so checked) before the first run starts: a bad override or preset
    # fails in a second, not after hours of the runs before it
    plan = []
    for preset in presets:
        for seed in seeds:
            run_dir = out_dir / f"{preset}-seed{seed}"
            over = deep_merge(
                overrides or {},
                {
                    "train": {"seed": seed, "run_name": run_dir.name, "output_dir": str(out_dir)},
                    "log": {"preset": preset},
                },
            )
            recipe = f"{env_recipes}/{trained[0] if preset == FROZEN else preset}"
            plan.append((preset, seed, run_dir, load_config(recipe, over)))
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for preset, seed, run_dir, cfg in plan:
        if not (run_dir / "result.json").exists():
            echo(f"=== {preset} seed {seed} ===")
            if preset == FROZEN:  # a trained preset's recipe, so the same warm start
                run_frozen(cfg, echo=echo)
            else:
                train(cfg, echo=echo)
        runs.setdefault(preset, []).append(
            {"seed": seed, "run_dir": str(run_dir), **summarise_run(run_dir)}
        )
    table = {}
    for preset, items in runs.items():
        row = {}
        for key in ("final_success", "best_success", "auc_success", "wall_seconds"):
            row[key] = mean_std([r[key] for r in items])
        table[preset] = row
    report = {"env_recipes": env_recipes, "seeds": seeds, "table": table, "runs": runs}
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2))
    (out_dir / "compare.md").write_text(markdown_table(table, len(seeds)))
    plot_mean_curves(runs, out_dir / "compare.png")
    return report


def markdown_table(table: dict[str, dict[str, tuple[float, float]]], n_seeds: int) -> str:
    lines = [
        f"| preset | final success | best success | AUC success | wall time (s) |  (mean ± std over {n_seeds} seeds)",
        "|---|---|---|---|---|",
    ]
    for preset, row in table.items():
        cells = [
            f"{m:.3f} ± {s:.3f}"
            for m, s in (row[k] for k in ("final_success", "best_success", "auc_success"))
        ]
        m, s = row["wall_seconds"]
        lines.append(f"| {preset} | " + " | ".join(cells) + f" | {m:.0f} ± {s:.0f} |")
    return "\n".join(lines) + "\n"


def plot_mean_curves(runs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for preset, items in runs.items():
        steps = items[0]["curve"]["steps"]
        curves = [r["curve"]["success"] for r in items if r["curve"]["steps"] == steps]
        if not steps or not curves:
            continue
        arr = np.array(curves)
        mean, std = arr.mean(0), arr.std(0)
        ax.plot(steps, mean, marker="o", ms=3, label=preset)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out success")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
