"""Keeping the LM head's chunks for backward against recomputing them, on the default's real work.

`token_logprobs` projects the scored positions through the LM head a chunk at a time. Before,
every chunk was checkpointed whenever there was more than one, so backward ran the LM head and the
log-softmax over the 49,152-token vocabulary a second time; now chunks are kept while the scored
logits stay under `models.forward.KEEP_LOGITS_ELEMENTS`. The numbers are the same: this script
checks that both ways leave bit-identical weights.

Builds the recipe's policy as `spear train` does (SFT warm start, from the cache when it has one),
rolls out step 1's batch, then in alternating rounds, each way on a fresh copy of the policy:
- one `policy_update` of that batch (the RL update, fp32);
- `--sft-episodes` expert episodes of SFT with the recipe's settings (its batches, bf16 where the
  recipe asks).

    python benchmarks/head_chunks.py [--recipe math/smollm2-calculator] [--rounds 3]

It prints a table and writes `benchmarks/results/head_chunks.json`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import hashlib
import json
import time
from pathlib import Path

import torch

from spear_rl.experiments.first_batch import first_batch
from spear_rl.experiments.interleaved import spread
from spear_rl.models import forward
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.settings import update_settings
from spear_rl.train.sft import run_sft
from spear_rl.train.update import policy_update

WAYS = {"recompute": 0, "keep": forward.KEEP_LOGITS_ELEMENTS}


def timed_update(model, samples, settings, lr: float) -> tuple[float, str]:
    probe, samples = copy.deepcopy(model), copy.deepcopy(samples)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr)
    t0 = time.perf_counter()
    policy_update(probe, optimizer, samples, None, 0.0, settings, torch.Generator().manual_seed(0))
    return time.perf_counter() - t0, digest(probe)


def timed_sft(model, tokenizer, env_factory, cfg, episodes: int) -> tuple[float, str]:
    probe = copy.deepcopy(model)
    sft_cfg = dataclasses.replace(cfg.sft, episodes=episodes, epochs=1)
    stats = run_sft(
        probe, tokenizer, env_factory, range(episodes), cfg.rollout, sft_cfg, seed=cfg.train.seed
    )
    return stats["train_seconds"], digest(probe)


def digest(model) -> str:
    """A hash of every weight's bytes: the copies need not be held (held, they slowed later ones)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="math/smollm2-calculator")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sft-episodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/head_chunks.json"))
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    model, tokenizer, env_factory, samples, _ = first_batch(cfg)
    model.train()
    settings = update_settings(cfg, tokenizer)
    rounds, identical = [], {"update": True, "sft": True}
    for index in range(args.rounds):
        row, weights = {}, {}
        for way in WAYS if index % 2 == 0 else reversed(WAYS):
            forward.KEEP_LOGITS_ELEMENTS = WAYS[way]
            row[f"update_{way}_s"], weights[("update", way)] = timed_update(
                model, samples, settings, cfg.train.lr
            )
            gc.collect()
            row[f"sft_{way}_s"], weights[("sft", way)] = timed_sft(
                model, tokenizer, env_factory, cfg, args.sft_episodes
            )
            gc.collect()
        for part in identical:
            identical[part] &= weights[(part, "recompute")] == weights[(part, "keep")]
        rounds.append(row)
        print(f"round {index + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
    forward.KEEP_LOGITS_ELEMENTS = WAYS["keep"]
    medians = {key: spread([r[key] for r in rounds]) for key in rounds[0]}
    ratios = {
        part: spread([r[f"{part}_recompute_s"] / r[f"{part}_keep_s"] for r in rounds])
        for part in identical
    }
    tokens = sum(sum(s.loss_mask) for s in samples)
    print(
        f"\n{args.recipe}: update of {len(samples)} samples ({tokens} scored tokens); SFT of "
        f"{args.sft_episodes} episodes; {args.rounds} rounds, medians"
    )
    print("| work | recompute | keep | recompute / keep (range) | same weights |")
    print("|---|---|---|---|---|")
    for part in identical:
        r = ratios[part]
        print(
            f"| {part} | {medians[f'{part}_recompute_s']['median']:.2f} s "
            f"| {medians[f'{part}_keep_s']['median']:.2f} s "
            f"| {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}) | {identical[part]} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "recipe": args.recipe,
        "samples": len(samples),
        "scored_tokens": tokens,
        "sft_episodes": args.sft_episodes,
        "keep_logits_elements": WAYS["keep"],
        "threads": torch.get_num_threads(),
        "bit_identical_weights": identical,
        "medians": medians,
        "recompute_over_keep": ratios,
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
