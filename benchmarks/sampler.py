"""Does drawing a token by inverse CDF pay? The `hf` sampler with `torch.multinomial` vs without.

`torch.multinomial` draws one exponential per vocabulary entry for every token it samples (49,152
for SmolLM2), and the NaN check ran `isfinite` over every logit; the sampler now draws one uniform
per row and finds its token in the cumulative distribution (`generation._inverse_cdf`), and checks
the logits' min and max. Both draw from the same distribution but consume the
generator differently, so they sample different tokens: compare generated tokens per second. Each
round rolls out the recipe's evaluation and one training step's episodes with each sampler
(experiments/rollout_ab.py), in alternating order; medians and min-max over rounds, saved as JSON.

    python benchmarks/sampler.py                  # the default recipe, 3 rounds
    python benchmarks/sampler.py --recipe sokoban/spear

The numbers are wall-clock on whatever machine runs it; on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import spear_rl.rollout.generation as generation
from spear_rl.experiments.interleaved import pair_orders, spread
from spear_rl.experiments.rollout_ab import compare_rollouts
from spear_rl.models import ModelConfig, load_policy

OUT = Path("benchmarks/results/sampler.json")
SAMPLE = generation._sample


def sample_before(logits, temperature, top_p, generator):
    """The sampler before 2026-12-07: isfinite over every logit, then `torch.multinomial`."""
    logits = logits.float()
    if not bool(torch.isfinite(logits).all()):
        raise generation.GenerationError("NaN/inf logits")
    if temperature == 0 or top_p < 1.0:
        return SAMPLE(logits, temperature, top_p, generator)  # not what this benchmark compares
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    chosen = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
    return chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)


def use(side: str) -> None:
    generation._sample = SAMPLE if side == "inv_cdf" else sample_before


def decode_steps(batches: list[int], rounds: int) -> dict:
    """Fixed work: ms per decoding step of SmolLM2 (untrained) on `batch` rows of 240 prompt tokens
    that never stop, with each sampler: (time for 40 tokens - time for 8) / 32."""
    model, tokenizer = load_policy(ModelConfig(name_or_path="smollm2"))
    model.eval()
    text = "What is 12 * 34 + 56 * 78? Use the tool, then answer in \\boxed{}. " * 16
    base = tokenizer(text)["input_ids"][:237]

    def seconds(prompts, tokens: int) -> float:
        started = time.perf_counter()
        generation.generate(
            model,
            prompts,
            tokens,
            eos_token_ids=-1,
            pad_token_id=0,
            generator=torch.Generator().manual_seed(0),
        )
        return time.perf_counter() - started

    result = {}
    for batch in batches:
        prompts = [base + [100 + i, 200 + i, 300 + i] for i in range(batch)]
        times: dict[str, list[float]] = {"multinom": [], "inv_cdf": []}
        for order in pair_orders(rounds, ("multinom", "inv_cdf")):
            for side in order:
                use(side)
                seconds(prompts, 2)  # warm-up
                times[side].append((seconds(prompts, 40) - seconds(prompts, 8)) / 32 * 1000)
        use("inv_cdf")
        result[batch] = {side: spread(ms) | {"runs": ms} for side, ms in times.items()}
        old, new = (result[batch][side]["median"] for side in ("multinom", "inv_cdf"))
        print(f"decoding step, {batch} rows: {old:.1f} ms -> {new:.1f} ms ({old / new:.2f}x)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--rounds", type=int, default=3, help="sampler pairs, alternating order")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--decode-batches", default="16,64", help="fixed-work decoding steps at these batch sizes"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args, rest = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.decode_batches.split(",") if b]
    steps = decode_steps(batches, args.rounds)
    sides = ("multinom", "inv_cdf")
    extra = {"decode_step_ms": steps}
    compare_rollouts(args.recipe, rest, use, sides, args.rounds, args.out, "sampler", extra)


if __name__ == "__main__":
    main()
