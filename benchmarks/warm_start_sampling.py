"""Where do the warm start's wins come from? Its held-out success at several sampling temperatures.

A policy that wins greedily (temperature 0) as often as when sampling has a competent most-likely
action, and RL's first effect, sharpening, can only help it; one that wins only when sampling owes
its wins to randomness, and sharpening removes them. Runs the recipe's SFT warm start (cached as in
training) and evaluates it on the same held-out seeds at each temperature.

    python benchmarks/warm_start_sampling.py --recipe sokoban/spear                       # the old default
    python benchmarks/warm_start_sampling.py --recipe sokoban/spear --sft.episodes=2048   # more data
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from spear_rl.api import build_config
from spear_rl.train.config import parse_overrides
from spear_rl.train.evaluate import evaluate_policy
from spear_rl.train.runtime import make_env_factory, set_threads
from spear_rl.train.warm_start import initial_policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=None, help="default: the built-in default recipe")
    parser.add_argument("--temperatures", default="1.0,0.7,0.0")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None, help="append a JSON line here")
    args, rest = parser.parse_known_args(argv)
    cfg = build_config(args.recipe, parse_overrides(rest))
    set_threads(cfg)
    env_factory = make_env_factory(cfg)
    model, tokenizer, _ = initial_policy(cfg, env_factory, print)
    rows = {}
    for temperature in (float(t) for t in args.temperatures.split(",")):
        rollout = dataclasses.replace(cfg.rollout, temperature=temperature)
        metrics, _ = evaluate_policy(model, tokenizer, env_factory, rollout, args.episodes, seed=1)
        rows[temperature] = metrics
        print(
            f"temperature {temperature}: held-out success {metrics['eval/success_rate']:.3f} "
            f"({args.episodes} episodes), invalid turns {metrics['eval/invalid_rate']:.3f}",
            flush=True,
        )
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps({"recipe": args.recipe, "overrides": rest, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
