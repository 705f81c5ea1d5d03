"""Does training the warm start on whole episodes pay? A row per expert turn vs a row per episode.

In the `whole` layout a turn's prompt is the conversation so far, so a row per turn repeats each
episode's history in every later row. `sft.sft_rows` now makes one row of each expert episode, as
RL's whole-layout samples are; the loss on each response is the same (tests/train/test_sft.py), and
`sft.batch_size` still counts turns. Each round warms up a fresh policy both ways, in alternating
order (a row per turn is what `sft_rows(..., "per_turn")` gives: the code before the change), and
reports the SFT training seconds, the tokens fed, the optimiser steps and the last loss. Medians
and min-max over rounds, old/new ratios per round, JSON.

    python benchmarks/sft_rows.py                      # the default recipe, 3 rounds (~10 min)

The numbers are wall-clock on whatever machine runs it; on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import spear_rl.train.sft as sft
from spear_rl.experiments.interleaved import pair_orders, pair_ratios, spread
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.runtime import make_env_factory, set_threads
from spear_rl.train.warm_start import build_policy, sft_warm_start

OUT = Path("benchmarks/results/sft_rows.json")
KEYS = ("train_seconds", "tokens", "steps", "rows", "pairs", "loss_last_mean")


def warm_start(cfg, env_factory, rows: str) -> dict:
    """One SFT warm start of a fresh policy, with `rows` = turn (the old rows) or episode."""
    merged = sft.sft_rows
    if rows == "turn":
        sft.sft_rows = lambda episodes, layout: merged(episodes, "per_turn")
    try:
        model, tokenizer = build_policy(cfg, env_factory, None)
        return sft_warm_start(model, tokenizer, env_factory, cfg, echo=lambda *_: None)
    finally:
        sft.sft_rows = merged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--rounds", type=int, default=3, help="turn/episode pairs, alternating")
    parser.add_argument("--out", type=Path, default=OUT)
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    if cfg.rollout.layout != "whole":
        raise SystemExit(f"the recipe's layout is {cfg.rollout.layout}: rows differ only in whole")
    set_threads(cfg)
    env_factory = make_env_factory(cfg)
    runs: dict[str, list[dict]] = {"turn": [], "episode": []}
    for r, order in enumerate(pair_orders(args.rounds, ("turn", "episode"))):
        for rows in order:
            stats = warm_start(cfg, env_factory, rows)
            runs[rows].append({k: stats[k] for k in KEYS})
            print(
                f"round {r + 1} a row per {rows:7}: {stats['train_seconds']:.1f} s, "
                f"{stats['steps']} steps, {stats['tokens']} tokens, "
                f"last loss {stats['loss_last_mean']:.3f}",
                flush=True,
            )
    seconds = {name: [run["train_seconds"] for run in rows] for name, rows in runs.items()}
    ratios = pair_ratios(seconds["turn"], seconds["episode"])
    summary = {
        "recipe": args.recipe or "default",
        "overrides": rest,
        "rounds": args.rounds,
        "sides": {
            name: {k: spread([run[k] for run in rows]) for k in KEYS} | {"runs": rows}
            for name, rows in runs.items()
        },
        "speedup": spread(ratios) | {"per_round": ratios},
    }
    print(f"\n{'a row per':10} {'SFT s':>20} {'tokens':>8} {'steps':>6} {'last loss':>10}")
    for name, side in summary["sides"].items():
        s = side["train_seconds"]
        print(
            f"{name:10} {s['median']:6.1f} ({s['min']:.1f}-{s['max']:.1f}) "
            f"{side['tokens']['median']:8.0f} {side['steps']['median']:6.0f} "
            f"{side['loss_last_mean']['median']:10.3f}"
        )
    sp = summary["speedup"]
    print(f"a row per episode: {sp['median']:.2f}x ({sp['min']:.2f}-{sp['max']:.2f}) per round")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
