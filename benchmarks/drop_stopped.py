"""Does dropping stopped rows from the decoding batch pay? The `hf` engine with it off vs on.

A batch decodes until its last row stops; rows that stopped earlier used to be computed anyway.
The sampler now drops them (and their KV-cache rows) once they are a quarter of the batch
(`generation.DROP_STOPPED_ROWS`). Each round rolls out the recipe's evaluation (`train.eval_episodes`
held-out episodes) and one training step's episodes with dropping off and on, in alternating order,
from the recipe's SFT warm start (cached as in training). Sampling draws differ once the batch
shrinks, so the two settings sample different (equally distributed) tokens: compare generated
tokens per second. Reports medians and min-max over rounds, and saves JSON.

    python benchmarks/drop_stopped.py                  # the default recipe, 3 rounds
    python benchmarks/drop_stopped.py --recipe sokoban/spear

The numbers are wall-clock on whatever machine runs it; on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

import spear_rl.rollout.generation as generation
from spear_rl.experiments.interleaved import spread
from spear_rl.experiments.timed_rollout import timed_rollout
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.evaluate import eval_seeds
from spear_rl.train.runtime import make_env_factory, task_seeds
from spear_rl.train.warm_start import initial_policy

OUT = Path("benchmarks/results/drop_stopped.json")


def one_rollout(model, tokenizer, env_factory, rollout_cfg, seeds: list[int], seed: int) -> dict:
    run, _ = timed_rollout(model, tokenizer, env_factory, seeds, rollout_cfg, seed)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternating order")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT)
    args, rest = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.recipe, parse_overrides(rest))
    env_factory = make_env_factory(cfg)
    model, tokenizer, _ = initial_policy(cfg, make_env_factory(cfg))
    model.eval()
    phases = {  # (rollout settings, task seeds): an evaluation plays each seed once
        "eval": (
            dataclasses.replace(cfg.rollout, group_size=1),
            eval_seeds(cfg.train.eval_episodes),
        ),
        "train_step": (cfg.rollout, task_seeds(cfg, 1)),
    }
    runs: dict[str, dict[str, list[dict]]] = {p: {"off": [], "on": []} for p in phases}
    try:
        for r in range(args.rounds):
            for drop in (False, True) if r % 2 == 0 else (True, False):
                generation.DROP_STOPPED_ROWS = drop
                name = "on" if drop else "off"
                for phase, (rollout_cfg, seeds) in phases.items():
                    run = one_rollout(model, tokenizer, env_factory, rollout_cfg, seeds, r + 1)
                    runs[phase][name].append(run)
                    print(
                        f"round {r + 1} {phase:10} drop={name:3}: {len(seeds)} tasks, "
                        f"generate {run['generate_s']:.1f} s, {run['tokens_per_s']:.0f} tok/s",
                        flush=True,
                    )
    finally:
        generation.DROP_STOPPED_ROWS = True
    summary: dict = {"recipe": args.recipe or "default", "rounds": args.rounds, "phases": {}}
    print(f"\n{'phase':11} {'drop':5} {'generate s':>22} {'tok/s':>20} {'speedup':>8}")
    for phase, by in runs.items():
        entry = {
            name: {k: spread([run[k] for run in rows]) for k in ("generate_s", "tokens_per_s")}
            | {"runs": rows}
            for name, rows in by.items()
        }
        entry["speedup_tokens_per_s"] = (
            entry["on"]["tokens_per_s"]["median"] / entry["off"]["tokens_per_s"]["median"]
        )
        summary["phases"][phase] = entry
        for name in ("off", "on"):
            g, t = entry[name]["generate_s"], entry[name]["tokens_per_s"]
            ratio = t["median"] / entry["off"]["tokens_per_s"]["median"]
            print(
                f"{phase:11} {name:5} {g['median']:6.1f} ({g['min']:.1f}-{g['max']:.1f})"
                f"{'':4} {t['median']:6.0f} ({t['min']:.0f}-{t['max']:.0f})  {ratio:7.2f}x"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
