"""Is the default `spear train` faster end to end than at an older commit?

Exports `src/` of each git ref into a temporary folder and runs `python -m spear_rl.cli train` (by
default `--recipe sokoban/spear`: the built-in default when issue 34 was filed) from each, in
alternating order for a few rounds, one fresh process per run (this machine is noisy). Every run gets an empty SFT cache,
so it measures a new user's first run; `--cached` adds one more run per ref on a warmed cache.
Reports wall seconds per run, its split (SFT, generation, update, evaluation and the rest, from
the run's metrics), the old/new ratio per round, and both runs' closing line, so a change of
result shows up next to a change of speed.

    python benchmarks/default_run.py --old 7fc445a --new HEAD [--rounds 2] [-- --train.steps=10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spear_rl.experiments.git_refs import export_src

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "default_run.json"


def run(src: Path, cache: Path, out: Path, extra: list[str]) -> dict:
    """One `spear train` run; wall seconds, the phase split and the closing line."""
    env = {**os.environ, "PYTHONPATH": str(src), "SPEAR_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "spear_rl.cli", "train", f"--train.output_dir={out}", *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"run from {src} failed:\n{proc.stderr[-3000:]}")
    run_dir = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = ("time/generate", "time/update", "eval/seconds")
    total = {k: sum(r.get(k, 0.0) for r in rows) for k in keys}
    steps = sum(r.get("time/step", 0.0) for r in rows)
    closing = next(
        (line for line in proc.stdout.splitlines() if line.startswith("held-out success:")), ""
    )
    sft = next((r["sft/seconds"] for r in rows if "sft/seconds" in r), None)
    return {
        "wall_s": wall,
        "sft_s": sft,
        "generate_s": total["time/generate"],
        "update_s": total["time/update"],
        "eval_s": total["eval/seconds"],
        "rl_steps_s": steps,
        "closing_line": closing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", default="7fc445a", help="git ref of the baseline")
    parser.add_argument("--new", default="HEAD", help="git ref to compare (committed code)")
    parser.add_argument("--rounds", type=int, default=2, help="old/new pairs, alternating order")
    parser.add_argument(
        "--recipe",
        default="sokoban/spear",
        help="the job to time (default: the built-in default when issue 34 was filed; '' = "
        "each ref's own built-in default)",
    )
    parser.add_argument("--cached", action="store_true", help="also one run on a warmed cache")
    parser.add_argument("--out", type=Path, default=OUT)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"] + ([f"--recipe={args.recipe}"] if args.recipe else [])
    results: dict[str, list[dict]] = {"old": [], "new": []}
    cached: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shas = {arm: export_src(getattr(args, arm), tmp / arm, ROOT) for arm in ("old", "new")}
        for rnd in range(args.rounds):
            for arm in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
                print(f"round {rnd + 1}/{args.rounds}: {arm} ({shas[arm][:7]}) ...", flush=True)
                cache = tmp / f"cache-{arm}-{rnd}"
                record = run(tmp / arm / "src", cache, tmp / f"runs-{arm}-{rnd}", extra)
                results[arm].append(record)
                print(f"  {record['wall_s']:.0f} s  {record['closing_line']}", flush=True)
                if args.cached and rnd == args.rounds - 1:
                    print(f"  {arm} again on the warmed cache ...", flush=True)
                    cached[arm] = run(tmp / arm / "src", cache, tmp / f"cached-{arm}", extra)
                    print(f"  {cached[arm]['wall_s']:.0f} s", flush=True)

    def median(arm: str, key: str) -> float | None:
        values = [r[key] for r in results[arm] if r[key] is not None]
        return statistics.median(values) if values else None

    ratios = [
        o["wall_s"] / n["wall_s"] for o, n in zip(results["old"], results["new"], strict=True)
    ]
    summary = {
        "refs": shas,
        "args": extra,
        "runs": results,
        "cached_runs": cached,
        "median": {
            arm: {
                k: median(arm, k) for k in ("wall_s", "sft_s", "generate_s", "update_s", "eval_s")
            }
            for arm in ("old", "new")
        },
        "old_over_new_per_round": ratios,
    }
    print(f"\n{'':5} {'wall s':>8} {'SFT s':>7} {'generate s':>11} {'update s':>9} {'eval s':>7}")
    for arm in ("old", "new"):
        m = summary["median"][arm]
        sft = "-" if m["sft_s"] is None else f"{m['sft_s']:.0f}"
        print(
            f"{arm:5} {m['wall_s']:8.0f} {sft:>7} {m['generate_s']:11.0f} {m['update_s']:9.0f} "
            f"{m['eval_s']:7.0f}"
        )
    print(
        "(medians over rounds) old / new wall, per round: " + ", ".join(f"{r:.2f}" for r in ratios)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
