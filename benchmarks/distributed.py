"""Step time and throughput of `spear train` on 1 process vs 2 torchrun ranks (gloo, CPU).

All runs train the same recipe with the same global batch (`train.batch_tasks` tasks x
`rollout.group_size` episodes per step; each of 2 ranks runs half the tasks), one after the other
in one invocation of this script, so the numbers share the machine's state: one process with one
thread, one process with two threads, and 2 ranks with one thread each (2 ranks x 2 threads on 2
cores ran 40x slower). The Dr.BoT response filters and the group filter are off, so that every
step trains on its whole batch (a policy warmed up for seconds writes mostly filtered turns).

Reported per run, over the steps after the first (which pays start-up costs): seconds per step,
its generate / update split (rank 0's), and response tokens generated per second (the global
batch's samples x mean response length / step time).

    python benchmarks/distributed.py                     # sokoban/spear, 3 steps, 8 x 8 episodes
    python benchmarks/distributed.py --steps 6 --parallel fsdp

Writes benchmarks/results/distributed/summary.json; run folders go to a temporary directory.
The numbers are wall-clock on whatever machine runs it; read them as a ratio within one run.
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

from spear_rl.experiments.run_args import EVERY_SAMPLE_TRAINS

OUT = Path(__file__).resolve().parent / "results" / "distributed"
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def run_args(args: argparse.Namespace, output_dir: Path, name: str) -> list[str]:
    return [
        "train",
        "--recipe",
        args.recipe,
        f"--train.steps={args.steps}",
        f"--train.batch_tasks={args.batch_tasks}",
        f"--rollout.group_size={args.group_size}",
        "--train.eval_every=0",
        "--train.eval_episodes=2",
        "--train.checkpoint_every=0",
        f"--train.parallel={args.parallel}",
        f"--sft.episodes={args.sft_episodes}",
        *EVERY_SAMPLE_TRAINS,
        "--log.progress=false",
        f"--train.output_dir={output_dir}",
        f"--train.run_name={name}",
    ]


def launch(ranks: int, cli_args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    if ranks == 1:
        cmd = [sys.executable, "-m", "spear_rl.cli", *cli_args]
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            "-m",
            "spear_rl.cli",
            *cli_args,
        ]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{ranks}-rank run failed:\n{done.stderr[-4000:]}")
    return time.time() - t0


def summarise(run_dir: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["step"] > 1 and "time/step" in r]
    if not steps:
        raise SystemExit(f"{run_dir}: no steps after the first; use --steps 3 or more")

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in steps)

    tokens = [r["batch/samples"] * r["rollout/response_len_mean"] for r in steps]
    return {
        "steps_measured": len(steps),
        "step_seconds": mean("time/step"),
        "generate_seconds": mean("time/generate"),
        "update_seconds": mean("time/update"),
        "samples_per_step": mean("batch/samples"),
        "response_tokens_per_s": statistics.fmean(
            t / r["time/step"] for t, r in zip(tokens, steps, strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="sokoban/spear")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-tasks", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--sft-episodes", type=int, default=16)
    parser.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"])
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ranks, threads in ((1, 1), (1, 2), (2, 1)):
            name = f"ranks{ranks}-threads{threads}"
            cli_args = [*run_args(args, Path(tmp), name), f"--train.threads={threads}"]
            wall = launch(ranks, cli_args)
            rows[name] = {
                "ranks": ranks,
                "threads_per_rank": threads,
                "wall_seconds": wall,
                **summarise(Path(tmp) / name),
            }
    two = rows["ranks2-threads1"]["step_seconds"]
    speedups = {name: row["step_seconds"] / two for name, row in rows.items()}
    print(f"{args.recipe}, {args.batch_tasks} tasks x {args.group_size} episodes per step, CPU")
    print(
        "| ranks x threads | s/step | generate s | update s | response tok/s | 2 ranks faster by |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {row['ranks']} x {row['threads_per_rank']} | {row['step_seconds']:.2f} | "
            f"{row['generate_seconds']:.2f} | {row['update_seconds']:.2f} | "
            f"{row['response_tokens_per_s']:.0f} | {speedups[name]:.2f}x |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {
        "recipe": args.recipe,
        "steps": args.steps,
        "batch_tasks": args.batch_tasks,
        "group_size": args.group_size,
        "parallel": args.parallel,
        "cpu_count": os.cpu_count(),
        "runs": rows,
        "step_time_over_2_ranks": speedups,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {OUT / 'summary.json'}")


if __name__ == "__main__":
    main()
