"""What choosing clip_cov's tokens over the whole mini-batch costs in the update (issue 29).

clip_cov / kl_cov pick their tokens from the current log-probs of the WHOLE mini-batch, so a
mini-batch split into several micro-batches first takes one no-grad forward pass over it
(`train/update.py: mini_batch_selection`). Unsplit, the loss selects from its own forward pass
at no extra cost. This times one `policy_update` on a synthetic batch (a tiny Qwen2 with random
weights, random token ids) for vanilla and clip_cov, unsplit and split, in ABBA order, and reports
clip_cov / vanilla time ratios: the split ratio minus the unsplit one is the pre-pass's share.

    python benchmarks/cov_selection_cost.py --samples 64 --micro 16 --repeats 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from spear_rl.algos.losses import PolicyLossConfig
from spear_rl.models.config import ModelConfig
from spear_rl.models.tiny import build_tiny_model
from spear_rl.models.tokenizer import build_tiny_tokenizer
from spear_rl.rollout.sample import Sample
from spear_rl.train.update import LossSpec, UpdateSettings, policy_update

OUT = Path(__file__).parent / "results" / "cov_selection_cost.json"


def synthetic_samples(vocab: int, count: int, prompt: int, response: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(count):
        ids = torch.randint(5, vocab, (prompt + response,), generator=gen).tolist()
        old = (-torch.rand(response, generator=gen) * 3).tolist()
        samples.append(
            Sample(
                ids[:prompt],
                ids[prompt:],
                [1] * response,
                old,
                group_id=i // 8,
                traj_id=i,
                advantage=float(torch.randn(1, generator=gen)),
            )
        )
    return samples


def time_update(model, samples, loss: str, micro: int, pad: int) -> float:
    spec = LossSpec(loss, PolicyLossConfig(), "seq-mean-token-sum-norm", t_norm=64)
    settings = UpdateSettings(
        on_policy=spec,
        replay=spec,
        mini_batch_size=0,
        micro_batch_size=micro,
        ppo_epochs=1,
        replay_batch=0,
        replay_ratio=1.0,
        replay_update="joint",
        grad_clip=1.0,
        temperature=1.0,
        pad_token_id=pad,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # time the update, leave the weights
    start = time.perf_counter()
    policy_update(model, optimizer, samples, None, 0.0, settings, torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=160)
    parser.add_argument("--response", type=int, default=24)
    parser.add_argument("--micro", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tok = build_tiny_tokenizer(["up down left right <action></action> # @ $ ."] * 50, 300)
    model = build_tiny_model(
        tok, ModelConfig(tiny_layers=args.layers, tiny_hidden=args.hidden, tiny_heads=4), seed=0
    )
    samples = synthetic_samples(len(tok), args.samples, args.prompt, args.response, seed=0)
    cases = [(loss, micro) for micro in (0, args.micro) for loss in ("vanilla", "clip_cov")]
    times: dict[str, list[float]] = {f"{loss}@{micro}": [] for loss, micro in cases}
    time_update(model, samples, "vanilla", args.micro, tok.pad_token_id)  # warm-up
    for r in range(args.repeats):
        for loss, micro in cases if r % 2 == 0 else list(reversed(cases)):  # ABBA
            times[f"{loss}@{micro}"].append(
                time_update(model, samples, loss, micro, tok.pad_token_id)
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    unsplit = med["clip_cov@0"] / med["vanilla@0"]
    split = med[f"clip_cov@{args.micro}"] / med[f"vanilla@{args.micro}"]
    print(
        f"{args.samples} samples x ({args.prompt} prompt + {args.response} response) tokens, "
        f"{args.layers}x{args.hidden} model, {args.threads} threads, {args.repeats} repeats"
    )
    print("| micro-batch | vanilla s (median) | clip_cov s (median) | clip_cov / vanilla |")
    print("|---|---|---|---|")
    for micro, ratio in ((0, unsplit), (args.micro, split)):
        label = "whole mini-batch" if micro == 0 else str(micro)
        print(
            f"| {label} | {med[f'vanilla@{micro}']:.3f} | {med[f'clip_cov@{micro}']:.3f} | "
            f"{ratio:.2f} |"
        )
    summary = {
        "args": vars(args),
        "seconds": times,
        "median": med,
        "ratio_unsplit": unsplit,
        "ratio_split": split,
        "note": "shared 2-core machine, other engineers' jobs running: ratios within one run",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
