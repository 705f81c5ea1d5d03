"""Does keeping keys/values between turns (`rollout.kv_reuse`) pay? Prefilled tokens and generation
speed of the multi-turn rollout with the `hf` engine, reuse off vs on, interleaved in one run.

For each layout (default: `sokoban/spear`, the default recipe until 2026-12-07, `per_turn`, and the
same recipe with `--rollout.layout=whole`), each round rolls out one training step's episodes
(`train.batch_tasks` x `rollout.group_size`, that step's task seeds) with reuse off and on, in
alternating order (off-on, on-off, ...), same seed for both. Reported per layout and setting:
prefilled prompt tokens per step, the tokens a full prefill of every prompt would cost, generation
seconds per step and generated tokens per second (medians, with min-max over rounds), and whether
reuse off and on sampled the same tokens. The policy is the recipe's SFT warm start (from the SFT
cache when there; the `whole` layout reuses the `per_turn` policy: only its compute matters here).

    python benchmarks/kv_reuse.py                        # sokoban per_turn and whole, 3 rounds
    python benchmarks/kv_reuse.py --rounds 5 --layouts whole
    python benchmarks/kv_reuse.py --recipe alfworld/spear --layouts whole

The numbers are wall-clock on whatever machine runs it; on a shared machine read the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from spear_rl.experiments.interleaved import spread
from spear_rl.experiments.timed_rollout import timed_rollout
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.runtime import make_env_factory, task_seeds
from spear_rl.train.warm_start import initial_policy

OUT = Path("benchmarks/results/kv_reuse.json")


def one_rollout(model, tokenizer, env_factory, cfg, rollout_cfg, step: int) -> dict:
    run, result = timed_rollout(
        model, tokenizer, env_factory, task_seeds(cfg, step), rollout_cfg, seed=step
    )
    counts = ("prefill_tokens", "prefill_tokens_full", "kv_full_prefills")
    return (
        run
        | {key: result.stats[key] for key in counts}
        | {"responses": [s.response_ids for s in result.samples]}
    )


def measure(args, layout: str, model, tokenizer) -> dict:
    cfg = load_config(args.recipe, parse_overrides([f"--rollout.layout={layout}", *args.overrides]))
    env_factory = make_env_factory(cfg)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    identical = True
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        by_setting = {}
        for reuse in order:
            rollout_cfg = dataclasses.replace(cfg.rollout, kv_reuse=reuse)
            run = one_rollout(model, tokenizer, env_factory, cfg, rollout_cfg, step=r + 1)
            by_setting[reuse] = run.pop("responses")
            runs[reuse].append(run)
            print(
                f"  {layout} round {r + 1} reuse={'on' if reuse else 'off'}: "
                f"prefill {run['prefill_tokens']:.0f}/{run['prefill_tokens_full']:.0f} tokens, "
                f"generate {run['generate_s']:.2f} s, {run['tokens_per_s']:.0f} tok/s, "
                f"rollout CPU {run['rollout_cpu_s']:.2f} s",
                flush=True,
            )
        identical &= by_setting[False] == by_setting[True]
    summary = {}
    for reuse, rows in runs.items():
        summary["on" if reuse else "off"] = {
            key: spread([row[key] for row in rows])
            for key in (
                "prefill_tokens",
                "prefill_tokens_full",
                "generate_s",
                "tokens_per_s",
                "rollout_cpu_s",
            )
        } | {"kv_full_prefills": sum(row["kv_full_prefills"] for row in rows), "runs": rows}
    on, off = summary["on"], summary["off"]
    summary["prefill_ratio"] = on["prefill_tokens"]["median"] / off["prefill_tokens"]["median"]
    summary["speedup_median"] = on["tokens_per_s"]["median"] / off["tokens_per_s"]["median"]
    summary["identical_samples"] = identical
    summary["episodes_per_step"] = cfg.train.batch_tasks * cfg.rollout.group_size
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="sokoban/spear")
    parser.add_argument("--layouts", default="per_turn,whole")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternating order")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. --train.batch_tasks=4")
    args, unknown = parser.parse_known_args()
    args.overrides = [*args.overrides, *unknown]
    torch.set_num_threads(args.threads)
    cfg = load_config(
        args.recipe, parse_overrides(args.overrides)
    )  # the policy: the recipe's own warm start
    model, tokenizer, _ = initial_policy(cfg, make_env_factory(cfg))
    model.eval()
    results = {}
    for layout in args.layouts.split(","):
        results[layout] = measure(args, layout, model, tokenizer)

    header = (
        f"{'layout':9} {'reuse':5} {'prefill tok/step':>17} {'full':>8} {'generate s':>18} "
        f"{'gen tok/s':>18} {'ratio':>6} {'rollout CPU s':>19}"
    )
    print(f"\n{args.recipe}, {args.rounds} rounds, torch threads {args.threads}\n{header}")
    for layout, summary in results.items():
        for name in ("off", "on"):
            s = summary[name]
            g, t, c = s["generate_s"], s["tokens_per_s"], s["rollout_cpu_s"]
            ratio = t["median"] / summary["off"]["tokens_per_s"]["median"]
            print(
                f"{layout:9} {name:5} {s['prefill_tokens']['median']:17.0f} "
                f"{s['prefill_tokens_full']['median']:8.0f} "
                f"{g['median']:6.2f} [{g['min']:.2f}-{g['max']:.2f}] "
                f"{t['median']:6.0f} [{t['min']:.0f}-{t['max']:.0f}] {ratio:6.2f} "
                f"{c['median']:6.2f} [{c['min']:.2f}-{c['max']:.2f}]"
            )
        print(
            f"{layout:9} prefill on/off {summary['prefill_ratio']:.3f}, "
            f"same samples off vs on: {summary['identical_samples']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"recipe": args.recipe, "rounds": args.rounds, "threads": args.threads}
    args.out.write_text(json.dumps({"settings": meta, "layouts": results}, indent=2))
    print(f"summary: {args.out}")


if __name__ == "__main__":
    main()
