"""Does the default `spear train` learn, and within what time?

Runs the README's first command (`spear train`, the built-in default recipe) once per seed
(`--train.seed=S`), each in a fresh process with an empty SFT cache, as a new user's first run, one
after the other. Reports per seed the held-out success at the warm start and after RL with their
binomial std, whether the change is beyond the evaluation noise (the run's own closing line), the
held-out curve, and wall time split into SFT, generation, update and evaluation. Saves JSON, a
markdown table and a plot of the curves.

    python benchmarks/default_learning.py --seeds 0,1,2 [--recipe NAME] [-- --train.steps=10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "default_learning"


def one_run(seed: int, recipe: str | None, extra: list[str], tmp: Path) -> dict:
    out = tmp / f"runs-{seed}"
    env = {**os.environ, "SPEAR_CACHE_DIR": str(tmp / f"cache-{seed}")}
    command = [sys.executable, "-m", "spear_rl.cli", "train", f"--train.output_dir={out}"]
    command += ([f"--recipe={recipe}"] if recipe else []) + [f"--train.seed={seed}", *extra]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    run_dir = next(out.iterdir())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval/success_rate"]) for r in rows if "eval/success_rate" in r]
    episodes = int(json.loads((run_dir / "result.json").read_text())["eval_episodes"])

    def total(key: str) -> float:
        return sum(r.get(key, 0.0) for r in rows)

    closing = next(
        line for line in proc.stdout.splitlines() if line.startswith("held-out success:")
    )
    return {
        "seed": seed,
        "curve": curve,
        "before": curve[0][1],
        "after": curve[-1][1],
        "eval_episodes": episodes,
        "wall_s": wall,
        "sft_s": next((r["sft/seconds"] for r in rows if "sft/seconds" in r), 0.0),
        "generate_s": total("time/generate"),
        "update_s": total("time/update"),
        "eval_s": total("eval/seconds"),
        "closing_line": closing,
    }


def binomial_std(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / max(1, n))


def markdown(runs: list[dict], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| seed | held-out before RL | after RL | change (std of the eval noise) | held-out curve "
        "(step: success) | wall s | SFT s | generate s | update s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        n = r["eval_episodes"]
        noise = math.sqrt(binomial_std(r["before"], n) ** 2 + binomial_std(r["after"], n) ** 2)
        change = r["after"] - r["before"]
        curve = ", ".join(f"{s}: {v:.3f}" for s, v in r["curve"])
        lines.append(
            f"| {r['seed']} | {r['before']:.3f} ± {binomial_std(r['before'], n):.3f} | "
            f"{r['after']:.3f} ± {binomial_std(r['after'], n):.3f} | {change:+.3f} "
            f"({abs(change) / noise if noise else float('inf'):.1f}) | {curve} | {r['wall_s']:.0f} | "
            f"{r['sft_s']:.0f} | {r['generate_s']:.0f} | {r['update_s']:.0f} | {r['eval_s']:.0f} |"
        )
    before = [r["before"] for r in runs]
    after = [r["after"] for r in runs]
    walls = [r["wall_s"] for r in runs]
    if len(runs) > 1:
        lines += [
            "",
            f"Over {len(runs)} seeds: before {statistics.mean(before):.3f} ± "
            f"{statistics.stdev(before):.3f}, after {statistics.mean(after):.3f} ± "
            f"{statistics.stdev(after):.3f} (mean ± std over seeds); wall time "
            f"{min(walls):.0f}-{max(walls):.0f} s (median {statistics.median(walls):.0f} s).",
        ]
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        steps, values = zip(*r["curve"], strict=True)
        n = r["eval_episodes"]
        errors = [binomial_std(v, n) for v in values]
        ax.errorbar(steps, values, yerr=errors, marker="o", capsize=3, label=f"seed {r['seed']}")
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out success")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--out", type=Path, default=OUT)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            print(f"seed {seed} ...", flush=True)
            runs.append(one_run(seed, args.recipe, extra, Path(tmp)))
            print(f"  {runs[-1]['wall_s']:.0f} s  {runs[-1]['closing_line']}", flush=True)
    title = f"spear train ({args.recipe or 'the built-in default'}{' ' if extra else ''}{' '.join(extra)})"
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"recipe": args.recipe, "args": extra, "runs": runs}
    (args.out / "default_learning.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(runs, title)
    (args.out / "default_learning.md").write_text(table)
    plot(runs, args.out / "default_learning.png", title)
    print("\n" + table)
    print(f"saved {args.out}/default_learning.{{json,md,png}}")


if __name__ == "__main__":
    main()
