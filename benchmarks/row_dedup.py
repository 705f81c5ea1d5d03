"""Does scoring each distinct row once (`models/unique_rows.py`) speed up the default run's update?

A low-entropy policy plays the same moves in many episodes of a group, so the per_turn update batch
holds exact copies of one sample. This runs the old default recipe (`sokoban/spear`, its cached SFT
warm start) for a few steps with the copies merged and with every row scored, in alternating order
in one process (this machine is noisy), and reports the median seconds per step of the update and
of the whole step, the share of update rows that were copies, and the on/off ratios.

    python benchmarks/row_dedup.py [--steps 6] [--rounds 3] [--train.threads=1 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import spear_rl.models.forward as forward
from spear_rl.experiments.overhead import run_once
from spear_rl.train.config import parse_overrides

OUT = Path(__file__).parent / "results" / "row_dedup.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="sokoban/spear")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternating order")
    parser.add_argument("--out", type=Path, default=OUT)
    args, rest = parser.parse_known_args()
    extra = parse_overrides(rest)
    env, preset = args.recipe.split("/")
    merged = forward.distinct_rows
    rows = {"off": [0, 0], "on": [0, 0]}  # rows scored, rows in the batch

    def counting(model, input_ids, attention_mask, score_mask, arm):
        found = merged(model, input_ids, attention_mask, score_mask)
        if model.training:  # the update's forwards, not generation or evaluation
            scored = input_ids.shape[0] if found is None or arm == "off" else len(found[0])
            rows[arm][0] += scored
            rows[arm][1] += input_ids.shape[0]
        return found if arm == "on" else None

    steps: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for arm in ("off", "on") if rnd % 2 == 0 else ("on", "off"):
                forward.distinct_rows = lambda *a, arm=arm: counting(*a, arm=arm)
                print(f"round {rnd + 1}/{args.rounds}: copies merged {arm} ...", flush=True)
                steps[arm] += run_once(env, preset, args.steps, 0, Path(tmp), f"{arm}{rnd}", extra)
    forward.distinct_rows = merged

    def median(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in steps[arm])

    summary = {
        arm: {
            "update_s": median(arm, "time/update"),
            "step_s": median(arm, "time/step"),
            "rows_scored_share": rows[arm][0] / max(rows[arm][1], 1),
        }
        for arm in ("off", "on")
    }
    summary["update_speedup"] = summary["off"]["update_s"] / summary["on"]["update_s"]
    summary["step_speedup"] = summary["off"]["step_s"] / summary["on"]["step_s"]
    summary["config"] = {"recipe": args.recipe, "steps": args.steps, "rounds": args.rounds}
    summary["config"]["overrides"] = rest
    print(f"\n{args.recipe}: {args.steps} steps x {args.rounds} rounds per arm (median s/step)")
    print(f"{'copies merged':14} {'update s':>9} {'step s':>8} {'rows scored':>12}")
    for arm in ("off", "on"):
        s = summary[arm]
        print(f"{arm:14} {s['update_s']:9.2f} {s['step_s']:8.2f} {s['rows_scored_share']:12.2f}")
    print(f"speedup: update {summary['update_speedup']:.2f}x, step {summary['step_speedup']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
