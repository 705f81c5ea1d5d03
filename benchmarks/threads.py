"""Does `spear train` stall when another process competes for the CPU? Phase times of the default
recipe under each thread setting, on an idle machine and beside one CPU-bound process.

Each candidate runs `spear train` (the default recipe, sokoban/spear, its cached SFT warm start)
for a few steps twice: alone, and with a busy-loop process this script starts before the run and
stops after it, so one core is taken from it. Candidates and conditions interleave in one
invocation, so slow drift in the machine's load hits them alike:

- default: what `spear train` does today: all physical cores, idle OpenMP threads spin 3000
  times, then sleep (the CLI sets GOMP_SPINCOUNT=3000 before torch loads);
- spin1k: GOMP_SPINCOUNT=1000 (the default until 2026-12-07);
- passive: all cores, idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE);
- spin: the old default: all cores, GOMP_SPINCOUNT=300000 (libgomp's spin when no policy is set);
- spin10k: GOMP_SPINCOUNT=10000;
- one: train.threads=1 (nothing waits for a descheduled thread, half the cores idle).

Each run's libgomp reports the wait it really uses (OMP_DISPLAY_ENV; the JSON's `spincount`). The
response filters and group filter are off so that every step updates on its whole batch. Reported
per run: seconds per step and its generate / update split (means over the steps), the process's
wall and CPU seconds, and the 1-minute load average when it started; the table's ratio is loaded
over idle. The issue's target: the default no more than 2x slower beside one busy process.

    python benchmarks/threads.py                          # 4 candidates x idle/loaded, 2 steps
    python benchmarks/threads.py --candidates default,spin --repeats 2

Writes benchmarks/results/threads.json; run folders go to a temporary directory. Wall-clock on
whatever machine runs it: a machine that other work already loads has no idle condition.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from spear_rl.experiments.run_args import EVERY_SAMPLE_TRAINS

OUT = Path(__file__).resolve().parent / "results" / "threads.json"
# name -> (environment additions, extra CLI overrides); OpenMP's variables are dropped first
CANDIDATES = {
    "default": ({}, []),
    "spin": ({"GOMP_SPINCOUNT": "300000"}, []),
    "one": ({}, ["--train.threads=1"]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, []),
    "spin1k": ({"GOMP_SPINCOUNT": "1000"}, []),
}
OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "OMP_DISPLAY_ENV")
PHASES = ("step", "generate", "update")
CONDITIONS = ("idle", "loaded")


def train_args(args: argparse.Namespace, output_dir: Path, name: str, steps: int) -> list[str]:
    return [
        "train",
        "--recipe",
        args.recipe,
        f"--train.steps={steps}",
        f"--train.batch_tasks={args.batch_tasks}",
        "--train.eval_every=0",
        "--train.eval_episodes=2",
        "--train.checkpoint_every=0",
        f"--sft.cache_dir={args.sft_cache}",
        *EVERY_SAMPLE_TRAINS,
        "--log.progress=false",
        f"--train.output_dir={output_dir}",
        f"--train.run_name={name}",
    ]


def child_env(candidate: str, parent: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without its OpenMP settings (so `default` measures what `spear
    train` itself chooses), plus the candidate's, plus libgomp's report of what it runs with."""
    env = {k: v for k, v in parent.items() if k not in OPENMP_VARS}
    return env | CANDIDATES[candidate][0] | {"OMP_DISPLAY_ENV": "VERBOSE"}


def start_busy_loop() -> subprocess.Popen:
    """One CPU-bound competitor: a Python busy loop (one thread), given a moment to get going."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)
    return busy


def run_once(args: argparse.Namespace, tmp: Path, candidate: str, loaded: bool, name: str) -> dict:
    env = child_env(candidate, os.environ)
    overrides = CANDIDATES[candidate][1]
    cmd = [sys.executable, "-m", "spear_rl.cli", *train_args(args, tmp, name, args.steps)]
    busy = start_busy_loop() if loaded else None
    try:
        load = os.getloadavg()[0]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [*cmd, *overrides], env=env, capture_output=True, text=True, timeout=args.timeout
            )
        except subprocess.TimeoutExpired:  # stalled: keep the steps it finished, if any
            return {
                "timed_out": True,
                "wall_s": args.timeout,
                "load_at_start": load,
                **phase_seconds(tmp / name),
            }
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
    spin = re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    return {
        "timed_out": False,
        "wall_s": wall,
        "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "load_at_start": load,
        "spincount": int(spin.group(1)) if spin else None,
        "busy_note": "note: the CPU is already busy" in done.stderr,
        **phase_seconds(tmp / name),
    }


def phase_seconds(run_dir: Path) -> dict[str, float]:
    """Mean seconds per step of each phase over the steps the run logged ({} if none)."""
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    steps = [r for r in map(json.loads, lines) if "time/step" in r]
    if not steps:
        return {}
    out = {f"{p}_s": statistics.fmean(r[f"time/{p}"] for r in steps) for p in PHASES}
    return out | {"steps_done": len(steps)}


def summarise(runs: list[dict]) -> dict:
    """Per candidate: mean phase seconds idle and loaded (over repeats), and loaded / idle."""
    out = {}
    for candidate in dict.fromkeys(r["candidate"] for r in runs):
        row = {}
        for condition in CONDITIONS:
            mine = [r for r in runs if r["candidate"] == candidate and r["condition"] == condition]
            finished = [r for r in mine if not r["timed_out"]]
            stepped = [r for r in mine if "step_s" in r]
            row[condition] = (
                {
                    k: statistics.fmean(r[k] for r in finished) if finished else None
                    for k in ("wall_s", "cpu_s")
                }
                | {"load_at_start": statistics.fmean(r["load_at_start"] for r in mine)}
                | {
                    f"{p}_s": statistics.fmean(r[f"{p}_s"] for r in stepped) if stepped else None
                    for p in PHASES
                }
            )
            row[condition]["timed_out"] = len(mine) - len(finished)
        row["loaded_over_idle"] = {
            k: (row["loaded"][k] / row["idle"][k])
            if row["loaded"][k] is not None and row["idle"][k]
            else None
            for k in ("wall_s", *(f"{p}_s" for p in PHASES))
        }
        out[candidate] = row
    return out


def fmt(x: float | None, unit: str = "") -> str:
    return "timeout" if x is None else f"{x:.2f}{unit}"


def print_table(summary: dict, args: argparse.Namespace) -> None:
    print(
        f"\n{args.recipe}, {args.batch_tasks} tasks x its group size per step, {args.steps} steps, "
        f"{args.repeats} repeat(s); idle vs beside one busy-loop process (loaded / idle)"
    )
    print(
        "| candidate | s/step idle | loaded | ratio | generate idle | loaded | ratio | "
        "update idle | loaded | ratio | run wall ratio | run CPU s idle / loaded |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in summary.items():
        cells = []
        for p in PHASES:
            key = f"{p}_s"
            cells += [
                fmt(row["idle"][key]),
                fmt(row["loaded"][key]),
                fmt(row["loaded_over_idle"][key], "x"),
            ]
        print(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {fmt(row['loaded_over_idle']['wall_s'], 'x')} | "
            + f"{fmt(row['idle']['cpu_s'])} / {fmt(row['loaded']['cpu_s'])} |"
        )
    loads = {
        c: statistics.fmean(r[c]["load_at_start"] for r in summary.values()) for c in CONDITIONS
    }
    print(
        "1-minute load average at the runs' start: "
        + ", ".join(f"{c} {loads[c]:.1f}" for c in CONDITIONS)
        + " (other work; a quiet machine reads about 0: the busy loop starts 1 s before a run, too "
        "late to show); timeout: no step within --timeout"
    )
    if "default" in summary:
        ratio = summary["default"]["loaded_over_idle"]["step_s"]
        verdict = "meets" if ratio is not None and ratio <= 2 else "misses"
        print(
            f"\ndefault: loaded s/step is {fmt(ratio, 'x')} its idle time ({verdict} the 2x target)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="sokoban/spear")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-tasks", type=int, default=8, help="the recipe's own: 8")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--candidates", default="default,passive,spin,one", help=f"of {', '.join(CANDIDATES)}"
    )
    parser.add_argument(
        "--sft-cache", default="auto", help="sft.cache_dir (auto: the user's cache, filled once)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        help="seconds per run; a stalled run keeps its finished steps",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    candidates = args.candidates.split(",")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}: choose from {', '.join(CANDIDATES)}")

    runs = []
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # untimed: fills the SFT cache (if empty) and warms the file cache for every timed run
        prep = train_args(args, tmp, "prepare", 1)
        subprocess.run(
            [sys.executable, "-m", "spear_rl.cli", *prep], check=True, capture_output=True
        )
        for repeat in range(args.repeats):
            for candidate in candidates:
                # alternate which condition runs first, so drift does not favour one
                conditions = ("idle", "loaded") if repeat % 2 == 0 else ("loaded", "idle")
                for condition in conditions:
                    name = f"{candidate}-{condition}-{repeat}"
                    run = run_once(args, tmp, candidate, condition == "loaded", name)
                    run.update(candidate=candidate, condition=condition, repeat=repeat)
                    runs.append(run)
                    print(
                        f"{name}: wall {run['wall_s']:.1f}s, step {fmt(run.get('step_s'))}s, "
                        f"load at start {run['load_at_start']:.1f}, spincount {run.get('spincount')}",
                        flush=True,
                    )
    summary = summarise(runs)
    print_table(summary, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "seconds": time.time() - t_start,
        "summary": summary,
        "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
