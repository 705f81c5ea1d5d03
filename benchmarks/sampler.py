"""Does drawing a token by inverse CDF pay? The `hf` sampler with `torch.multinomial` vs without.

`torch.multinomial` draws one exponential per vocabulary entry for every token it samples (49,152
for SmolLM2); the sampler now draws one uniform per row and finds its token in the cumulative
distribution (`generation._inverse_cdf`). Both draw from the same distribution but consume the
generator differently, so they sample different tokens: compare generated tokens per second. Each
round rolls out the recipe's evaluation and one training step's episodes with each sampler
(experiments/rollout_ab.py), in alternating order; medians and min-max over rounds, saved as JSON.

    python benchmarks/sampler.py                  # the default recipe, 3 rounds
    python benchmarks/sampler.py --recipe sokoban/spear

The numbers are wall-clock on whatever machine runs it; on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import spear_rl.rollout.generation as generation
from spear_rl.experiments.rollout_ab import compare_rollouts

OUT = Path("benchmarks/results/sampler.json")
INVERSE_CDF = generation._inverse_cdf


def multinomial(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The sampler's draw before: one exponential per vocabulary entry."""
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1)


def use(side: str) -> None:
    generation._inverse_cdf = INVERSE_CDF if side == "inv_cdf" else multinomial


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--rounds", type=int, default=3, help="sampler pairs, alternating order")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT)
    args, rest = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    sides = ("multinom", "inv_cdf")
    compare_rollouts(args.recipe, rest, use, sides, args.rounds, args.out, "sampler")


if __name__ == "__main__":
    main()
