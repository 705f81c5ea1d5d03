"""Which settings are hard enough for RL to matter? The warm-started policy's success, per candidate.

SPEAR is for the regime where early wins are rare. Before a learning table is run, this measures
the policy it would start from (the recipe's model after its SFT warm start, never trained) on
calibration seeds, and marks the candidates whose success lies in the target band (default
5-25%). Calibration seeds are held-out tasks far from the ones a run evaluates on
(EVAL_SEED_OFFSET + 500000 + i, while runs evaluate on EVAL_SEED_OFFSET + i), so nothing reported
later is chosen on its own seeds.

    python benchmarks/calibrate.py --recipe math/smollm2-spear --episodes 64 \\
        --candidate arith-d2 env.kwargs.dataset=arith:arithmetic env.kwargs.difficulty=2 \\
        --candidate modpow-d1 env.kwargs.dataset=arith:modpow env.kwargs.difficulty=1 \\
        --rollout.engine=vllm --train.threads=2

Each `--candidate NAME KEY=VALUE ...` is one setting (overrides on top of the recipe); options after
the candidates (`--section.key=value`) apply to every candidate. The warm start is cached as in
training (`sft.cache_dir`), so a learning run with the same settings starts from the same policy.
Writes a table and `--out` JSON (success with its binomial std, tool calls, invalid turns, turns).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from spear_rl.api import build_config
from spear_rl.envs.base import EVAL_SEED_OFFSET
from spear_rl.rollout.runner import run_rollout
from spear_rl.train.config import deep_merge, parse_overrides
from spear_rl.train.rollout_engine import start_engine
from spear_rl.train.runtime import derive_seed, make_env_factory, pick_device, set_threads
from spear_rl.train.warm_start import initial_policy

CALIBRATION_SEED_OFFSET = EVAL_SEED_OFFSET + 500_000


def calibration_seeds(episodes: int) -> list[int]:
    return [CALIBRATION_SEED_OFFSET + i for i in range(episodes)]


def parse_candidate(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    name, *pairs = tokens
    bad = [pair for pair in pairs if "=" not in pair]
    if bad:
        raise SystemExit(f"--candidate {name}: {bad[0]!r} is not KEY=VALUE")
    return name, parse_overrides([f"--{pair}" for pair in pairs])


def calibrate(cfg, episodes: int, echo=print) -> dict[str, Any]:
    """The warm start's success on `episodes` calibration seeds, sampled as a run samples."""
    set_threads(cfg)
    started = time.time()
    env_factory = make_env_factory(cfg)
    model, tokenizer, _ = initial_policy(cfg, env_factory, echo)
    model.to(pick_device(cfg.train.device)).eval()
    engine, _ = start_engine(cfg, model, tokenizer, env_factory, echo)
    try:
        result = run_rollout(
            model,
            tokenizer,
            env_factory,
            calibration_seeds(episodes),
            dataclasses.replace(cfg.rollout, group_size=1),
            seed=derive_seed(cfg.train.seed, 0, "calibrate"),
            engine=engine,
        )
    finally:
        engine.close()
    trajs = result.trajectories
    n = len(trajs)
    success = sum(t.won for t in trajs) / n
    turns = sum(len(t.turns) for t in trajs)
    return {
        "success": success,
        "success_std": math.sqrt(success * (1 - success) / n),
        "episodes": n,
        "tool_calls_per_episode": sum(t.tool_calls for t in trajs) / n,
        "invalid_rate": sum(t.invalid_turns for t in trajs) / max(1, turns),
        "turns_per_episode": turns / n,
        "seconds": time.time() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="math/smollm2-spear")
    parser.add_argument(
        "--candidate", nargs="+", action="append", required=True, metavar="NAME KEY=VALUE"
    )
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--band", default="0.05,0.25", help="target success band, low,high")
    parser.add_argument("--out", default="benchmarks/results/calibrate.json")
    args, rest = parser.parse_known_args(argv)
    common = deep_merge(parse_overrides(rest), {"log": {"progress": False}})
    low, high = (float(x) for x in args.band.split(","))
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("candidates", {})
    for tokens in args.candidate:
        name, overrides = parse_candidate(tokens)
        cfg = build_config(args.recipe, deep_merge(common, overrides))
        print(f"== {name}: {args.recipe} {' '.join(tokens[1:])}", flush=True)
        row = calibrate(cfg, args.episodes)
        row.update(recipe=args.recipe, overrides=tokens[1:], common=rest)
        row["in_band"] = low <= row["success"] <= high
        report["candidates"][name] = row
        report["band"] = [low, high]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))  # after each candidate: nothing lost
        print(_table_line(name, row), flush=True)
    print(
        "\n| candidate | success ± std | tool calls / ep | invalid | in band |\n|---|---|---|---|---|"
    )
    for name, row in report["candidates"].items():
        print(_table_line(name, row))
    print(f"wrote {out}")


def _table_line(name: str, row: dict[str, Any]) -> str:
    return (
        f"| {name} | {row['success']:.3f} ± {row['success_std']:.3f} ({row['episodes']}) | "
        f"{row['tool_calls_per_episode']:.2f} | {row['invalid_rate']:.2f} | "
        f"{'yes' if row['in_band'] else 'no'} |"
    )


if __name__ == "__main__":
    main()
