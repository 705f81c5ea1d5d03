"""How much the update saves by scoring only response tokens (`token_logprobs(score_mask=...)`).

An agent's per_turn samples are long prompts (the page, the task, the admissible actions) with
short replies, and the policy loss needs log-probs of the replies only. The decoder must read the
whole prompt, but the LM head need not project it. This times forward + backward of the tiny
policy (`webshop/spear`'s model and tokenizer, untrained: speed does not depend on the weights) on
batches of 16 rows with a 20-token reply after prompts of several lengths, scoring every position
vs the reply only, alternating the two in one run (this machine is noisy). Needs `[webshop]`.

    python benchmarks/response_scoring.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spear_rl.models.forward import token_logprobs
from spear_rl.train.config import load_config
from spear_rl.train.runtime import make_env_factory
from spear_rl.train.warm_start import build_policy


def step_seconds(model, ids, attention, reply, score_mask) -> float:
    started = time.perf_counter()
    logp, _ = token_logprobs(model, ids, attention, with_entropy=True, score_mask=score_mask)
    (logp * reply).sum().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt-lengths", default="100,500,1000")
    parser.add_argument("--reply", type=int, default=20)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/response_scoring.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config("webshop/spear")
    model, tokenizer = build_policy(cfg, make_env_factory(cfg), None)
    vocab = len(tokenizer)
    rows = []
    print(f"tiny policy, vocabulary {vocab}, {args.rows} rows, {args.threads} thread(s)")
    print("| prompt tokens | all positions (s) | reply only (s) | ratio |\n|---|---|---|---|")
    for prompt in (int(n) for n in args.prompt_lengths.split(",")):
        length = prompt + args.reply
        # distinct rows, so the shared-prefix path does not apply to either variant
        ids = torch.randint(0, vocab, (args.rows, length))
        attention = torch.ones_like(ids)
        reply = torch.zeros_like(ids)
        reply[:, prompt:] = 1
        times = {"all": [], "reply": []}
        for _ in range(args.repeats):
            times["all"].append(step_seconds(model, ids, attention, reply, None))
            times["reply"].append(step_seconds(model, ids, attention, reply, reply))
        best = {k: min(v) for k, v in times.items()}
        ratio = best["reply"] / best["all"]
        rows.append(
            {"prompt_tokens": prompt, **{f"{k}_s": v for k, v in best.items()}, "ratio": ratio}
        )
        print(f"| {prompt} | {best['all']:.3f} | {best['reply']:.3f} | **{ratio:.2f}** |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**vars(args), "vocab": vocab}, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
