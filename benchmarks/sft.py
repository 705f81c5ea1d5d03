"""How able is the tiny policy after the SFT warm start? Held-out success vs a random policy.

Builds the policy of a recipe exactly as `spear train` does (tokenizer trained on the env's text,
SFT on expert episodes rendered as the rollout renders them), then evaluates it on held-out task
seeds, next to a policy that picks uniformly among the env's admissible actions.

    python benchmarks/sft.py --recipe sokoban/spear
    python benchmarks/sft.py --recipe alfworld/spear --sft.episodes=256
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.evaluate import eval_seeds, evaluate_policy
from spear_rl.train.runtime import make_env_factory, set_threads
from spear_rl.train.warm_start import initial_policy


def random_policy_success(env_factory, episodes: int, max_turns: int) -> float:
    wins = 0
    for seed in eval_seeds(episodes):
        env, rng = env_factory(), random.Random(seed)
        env.reset(seed)
        for _ in range(max_turns):
            actions = env.admissible_actions
            if not actions or env.step(env.format_action(rng.choice(actions))).done:
                break
        wins += env.won
        env.close()
    return wins / episodes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="sokoban/spear")
    parser.add_argument("--episodes", type=int, default=64, help="held-out evaluation episodes")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/sft_<env>.json)"
    )
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    set_threads(cfg)
    env_factory = make_env_factory(cfg)
    t0 = time.time()
    # honours --sft.cache_dir=DIR: the warmed-up policy is kept there for inspection and reuse
    model, tokenizer, stats = initial_policy(cfg, env_factory)
    sft_seconds = stats.get("seconds", time.time() - t0)
    metrics, _ = evaluate_policy(
        model, tokenizer, env_factory, cfg.rollout, args.episodes, seed=cfg.train.seed
    )
    random_success = random_policy_success(env_factory, args.episodes, cfg.rollout.max_turns)
    result = {
        "recipe": args.recipe,
        "sft_episodes": cfg.sft.episodes,
        "sft_seconds": sft_seconds,
        "sft_loss_last_mean": stats.get("loss_last_mean"),
        "held_out_success": metrics["eval/success_rate"],
        "held_out_invalid_rate": metrics["eval/invalid_rate"],
        "random_success": random_success,
        "episodes": args.episodes,
    }
    print(
        f"| recipe | SFT episodes | SFT time | held-out success | random policy |\n|---|---|---|---|---|\n"
        f"| {args.recipe} | {cfg.sft.episodes} | {sft_seconds:.0f} s | {result['held_out_success']:.3f} "
        f"| {random_success:.3f} |  ({args.episodes} episodes each)"
    )
    out = Path(args.out or f"benchmarks/results/sft_{cfg.env.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
