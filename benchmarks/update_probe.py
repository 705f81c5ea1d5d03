"""Is the RL learning rate sane? One update on a real batch, at several learning rates.

Builds a recipe's policy as `spear train` does (SFT warm start, cached with `--sft.cache_dir`),
rolls out one batch, scores it, and for each learning rate applies one `policy_update` with a
fresh AdamW to a copy of the policy. It then reports how the log-probability of each trained
response moved, separately for positive- and negative-advantage samples. A sane step raises the
winners and lowers the losers; a step that lowers both overshoots.

    python benchmarks/update_probe.py --recipe sokoban/drbot --lrs 2e-4,1e-4,5e-5,2e-5 --train.threads=1

Measured on Sokoban, step 1's batch (docs/benchmarks.md): the sign is right at every lr from 2e-5
to 2e-4, but at 2e-4 the losers' responses drop ten times as far as at 5e-5 (-0.21 vs -0.02 nats).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch

from spear_rl.experiments.first_batch import first_batch
from spear_rl.models.forward import token_logprobs
from spear_rl.models.tokenizer import pad_token_id
from spear_rl.rollout.batch import collate_samples
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.settings import update_settings
from spear_rl.train.update import policy_update


def response_logps(model, samples, pad: int) -> list[float]:
    batch = collate_samples(samples, pad)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    return (logp * batch.loss_mask).sum(1).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="sokoban/drbot")
    parser.add_argument("--lrs", default="2e-4,1e-4,5e-5,2e-5")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/update_probe_<env>.json)"
    )
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    model, tokenizer, _, samples, episodes = first_batch(cfg)
    pad = pad_token_id(tokenizer)
    before = response_logps(model, samples, pad)
    settings = update_settings(cfg, tokenizer)
    rows = []
    print(f"{args.recipe}: one update on {len(samples)} samples from {len(episodes)} episodes")
    print("| lr | mean change of log p, A > 0 | mean change of log p, A < 0 | verdict |")
    print("|---|---|---|---|")
    for lr in (float(x) for x in args.lrs.split(",")):
        probe = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(
            probe.parameters(), lr=lr, weight_decay=cfg.train.weight_decay
        )
        policy_update(
            probe, optimizer, samples, None, 0.0, settings, torch.Generator().manual_seed(0)
        )
        change = [a - b for a, b in zip(response_logps(probe, samples, pad), before, strict=True)]
        up = [c for c, s in zip(change, samples, strict=True) if s.advantage > 0]
        down = [c for c, s in zip(change, samples, strict=True) if s.advantage < 0]
        up_mean = statistics.fmean(up) if up else float("nan")
        down_mean = statistics.fmean(down) if down else float("nan")
        verdict = "sane" if up_mean > 0 > down_mean else "overshoot" if up_mean < 0 else "check"
        rows.append({"lr": lr, "positive": up_mean, "negative": down_mean, "verdict": verdict})
        print(
            f"| {lr:g} | {up_mean:+.4f} (n={len(up)}) | {down_mean:+.4f} (n={len(down)}) | {verdict} |"
        )
    out = Path(args.out or f"benchmarks/results/update_probe_{cfg.env.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"recipe": args.recipe, "samples": len(samples), "rows": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
