"""The RL phases in fp32 against bf16 on the same work: the update (`train.precision`) and the hf
engine's sampling (`rollout.precision`).

Builds a recipe's policy as `spear train` does (SFT warm start, from the cache when it has one) and
rolls out one training batch. Then, in interleaved rounds (this machine is noisy):
- the update: one `policy_update` of that batch on a fresh copy of the policy, in fp32, and in
  bf16 autocast after recomputing pi_old in bf16 (the recompute is timed with it, as a bf16 run
  pays it every step);
- the sampling: one held-out evaluation (`train.eval_episodes` episodes, the rollout's sampling)
  with the hf engine on the policy (fp32) and on its bf16 copy. The two sample different tokens,
  so their work differs a little: the table gives tokens generated beside the time.

    python benchmarks/rl_precision.py --recipe math/smollm2-calculator --rounds 3

It prints a table and writes `benchmarks/results/rl_precision_<env>.json` (medians, ranges,
every round).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from spear_rl.experiments.first_batch import first_batch
from spear_rl.models.tokenizer import pad_token_id
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.evaluate import evaluate_policy
from spear_rl.train.rollout_engine import recompute_old_logprobs
from spear_rl.train.settings import update_settings
from spear_rl.train.update import policy_update

PRECISIONS = ("float32", "bfloat16")


def time_update(model, samples, settings, lr: float) -> float:
    """Seconds for pi_old (recomputed when the update is not fp32) plus one update, on a copy."""
    probe = copy.deepcopy(model)
    samples = copy.deepcopy(samples)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr)
    t0 = time.perf_counter()
    recompute_old_logprobs(
        HFEngine(probe, settings.pad_token_id, 1, False), probe, samples, settings
    )
    policy_update(probe, optimizer, samples, None, 0.0, settings, torch.Generator().manual_seed(0))
    return time.perf_counter() - t0


def time_sampling(model, tokenizer, env_factory, cfg, dtype) -> tuple[float, int]:
    """Seconds and tokens generated for one held-out evaluation through the hf engine."""
    engine = HFEngine(
        model, pad_token_id(tokenizer), cfg.rollout.generation_batch_size, True, dtype=dtype
    )
    t0 = time.perf_counter()
    _, trajectories = evaluate_policy(
        model, tokenizer, env_factory, cfg.rollout, cfg.train.eval_episodes, 0, engine
    )
    seconds = time.perf_counter() - t0
    tokens = sum(sum(s.loss_mask) for t in trajectories for s in t.samples)
    return seconds, tokens


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="math/smollm2-calculator")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="JSON path")
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    model, tokenizer, env_factory, samples, _ = first_batch(cfg)
    base = update_settings(cfg, tokenizer)
    rounds = []
    for index in range(args.rounds):
        row = {}
        for name in PRECISIONS:
            settings = dataclasses.replace(base, precision=name)
            row[f"update_{name}_s"] = time_update(model, samples, settings, cfg.train.lr)
            dtype = None if name == "float32" else torch.bfloat16
            seconds, tokens = time_sampling(model, tokenizer, env_factory, cfg, dtype)
            row[f"sampling_{name}_s"], row[f"sampling_{name}_tokens"] = seconds, tokens
        rounds.append(row)
        print(f"round {index + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    medians = {key: summary([r[key] for r in rounds]) for key in rounds[0]}
    ratios = {
        part: summary([r[f"{part}_float32_s"] / r[f"{part}_bfloat16_s"] for r in rounds])
        for part in ("update", "sampling")
    }
    print(f"\n{args.recipe}: {len(samples)} samples in the update, {args.rounds} rounds (medians)")
    print("| phase | fp32 | bf16 | fp32 / bf16 (range) |")
    print("|---|---|---|---|")
    for part in ("update", "sampling"):
        r = ratios[part]
        print(
            f"| {part} | {medians[f'{part}_float32_s']['median']:.1f} s "
            f"| {medians[f'{part}_bfloat16_s']['median']:.1f} s "
            f"| {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}) |"
        )
    out = Path(args.out or f"benchmarks/results/rl_precision_{cfg.env.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "recipe": args.recipe,
        "samples": len(samples),
        "threads": torch.get_num_threads(),
        "medians": medians,
        "fp32_over_bf16": ratios,
        "rounds": rounds,
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
