"""Two settings of the `hf` sampler side by side on the recipe's real rollouts (for benchmarks).

From the recipe's SFT warm start (cached as in training), each round rolls out the evaluation
(`train.eval_episodes` held-out episodes, one each) and one training step's episodes under both
settings, the side that goes first alternating by round. Settings that draw differently sample
different (equally distributed) tokens, so the number to compare is generated tokens per second.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from spear_rl.experiments.interleaved import pair_orders, spread
from spear_rl.experiments.timed_rollout import timed_rollout
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.evaluate import eval_seeds
from spear_rl.train.runtime import make_env_factory, task_seeds
from spear_rl.train.warm_start import initial_policy


def compare_rollouts(
    recipe: str | None,
    overrides: list[str],
    use: Callable[[str], None],
    sides: tuple[str, str],
    rounds: int,
    out: Path,
    label: str,
    extra: dict | None = None,
) -> dict:
    """`use(side)` switches the sampler to `side` (the first side is the baseline); returns and
    saves the summary: per phase and side the medians and ranges of generation seconds and tokens
    per second, and the second side's speed-up in tokens per second, plus the `extra` fields (the
    caller's other measurements)."""
    cfg = load_config(recipe, parse_overrides(overrides))
    env_factory = make_env_factory(cfg)
    model, tokenizer, _ = initial_policy(cfg, env_factory)
    model.eval()
    phases = {  # (rollout settings, task seeds): an evaluation plays each seed once
        "eval": (
            dataclasses.replace(cfg.rollout, group_size=1),
            eval_seeds(cfg.train.eval_episodes),
        ),
        "train_step": (cfg.rollout, task_seeds(cfg, 1)),
    }
    runs: dict[str, dict[str, list[dict]]] = {p: {s: [] for s in sides} for p in phases}
    try:
        for r, order in enumerate(pair_orders(rounds, sides)):
            for side in order:
                use(side)
                for phase, (rollout_cfg, seeds) in phases.items():
                    run, _ = timed_rollout(model, tokenizer, env_factory, seeds, rollout_cfg, r + 1)
                    runs[phase][side].append(run)
                    print(
                        f"round {r + 1} {phase:10} {label}={side:8}: {len(seeds)} tasks, "
                        f"generate {run['generate_s']:.1f} s, {run['tokens_per_s']:.0f} tok/s",
                        flush=True,
                    )
    finally:
        use(sides[-1])  # the library's own setting
    base, other = sides
    summary: dict = {"recipe": recipe or "default", "rounds": rounds, "phases": {}, **(extra or {})}
    print(f"\n{'phase':11} {label:9} {'generate s':>22} {'tok/s':>20} {'speedup':>8}")
    for phase, by in runs.items():
        entry = {
            side: {k: spread([run[k] for run in rows]) for k in ("generate_s", "tokens_per_s")}
            | {"runs": rows}
            for side, rows in by.items()
        }
        entry["speedup_tokens_per_s"] = (
            entry[other]["tokens_per_s"]["median"] / entry[base]["tokens_per_s"]["median"]
        )
        summary["phases"][phase] = entry
        for side in sides:
            g, t = entry[side]["generate_s"], entry[side]["tokens_per_s"]
            ratio = t["median"] / entry[base]["tokens_per_s"]["median"]
            print(
                f"{phase:11} {side:9} {g['median']:6.1f} ({g['min']:.1f}-{g['max']:.1f})"
                f"{'':4} {t['median']:6.0f} ({t['min']:.0f}-{t['max']:.0f})  {ratio:7.2f}x"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {out}")
    return summary
