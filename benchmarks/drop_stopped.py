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
from pathlib import Path

import torch

import spear_rl.rollout.generation as generation
from spear_rl.experiments.rollout_ab import compare_rollouts

OUT = Path("benchmarks/results/drop_stopped.json")


def use(side: str) -> None:
    generation.DROP_STOPPED_ROWS = side == "on"


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
    compare_rollouts(args.recipe, rest, use, ("off", "on"), args.rounds, args.out, "drop")


if __name__ == "__main__":
    main()
