"""`spear plot`: PNG curves of one or more runs, overlaid."""

from __future__ import annotations

from pathlib import Path

import yaml

from spear_rl.train.metrics import read_metrics

PANELS = (
    ("eval/success_rate", "held-out success"),
    ("rollout/success_rate", "training success"),
    ("reward/mean", "reward (R incl. bonus)"),
    ("actor/entropy", "entropy"),
    ("rollout/tool_call_rate", "tool-call rate"),
    ("replay/size", "replay buffer size"),
    ("coef/replay", "replay coefficient c(t)"),
    ("coef/toolcall_weight", "tool-call reward weight w(t)"),
)


def run_label(run_dir: Path) -> str:
    config = run_dir / "config.yaml"
    if config.is_file():
        data = yaml.safe_load(config.read_text()) or {}
        preset = (data.get("log") or {}).get("preset")
        seed = (data.get("train") or {}).get("seed")
        if preset:
            return f"{preset} (seed {seed})"
    return run_dir.name


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
    return [p[0] for p in points], [float(p[1]) for p in points]


def plot_runs(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [
        (labels[i] if labels else run_label(d), read_metrics(d)) for i, d in enumerate(run_dirs)
    ]
    panels = [p for p in PANELS if any(series(recs, p[0])[0] for _, recs in runs)]
    if not panels:
        raise ValueError("no plottable metrics found in " + ", ".join(map(str, run_dirs)))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for label, records in runs:
            xs, ys = series(records, key)
            if xs:
                ax.plot(xs, ys, marker="o" if key.startswith("eval/") else None, ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
