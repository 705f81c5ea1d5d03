"""What SPEAR costs per training step over Dr.BoT, on the same recipe, seeds and batch.

Runs the Dr.BoT and SPEAR presets of one environment in one process, in ABBA order (so drift in
machine load hits both alike), and reports wall time per step and its split (generate / env /
update / replay maintenance) as SPEAR / Dr.BoT ratios. Because the two policies diverge after the
first update, it also reports update time per trained token, and the replay term's own seconds
(`time/update_replay`) over the rest of SPEAR's steps: SPEAR's cost with its own rollouts held
fixed, free of differences in episode length.

    python benchmarks/overhead.py --env sokoban --steps 8 --repeats 2 [--train.threads=1 ...]
    # several SPEAR variants against the same Dr.BoT runs, in one process:
    python benchmarks/overhead.py --env sokoban --spear-key replay.replay_ratio --spear-values 1.0,0.25
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from spear_rl.experiments.overhead import PARTS, arms_to_run, run_once, summarise
from spear_rl.train.config import deep_merge, parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="sokoban")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; odd rounds run in reverse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-episodes", type=int, default=None, help="override sft.episodes")
    parser.add_argument("--spear-key", default=None, help="a config key to vary for SPEAR")
    parser.add_argument("--spear-values", default=None, help="its values, comma-separated")
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    args, rest = parser.parse_known_args()
    extra = parse_overrides(rest)  # e.g. --train.threads=1
    if args.sft_episodes is not None:
        extra = deep_merge(extra, {"sft": {"episodes": args.sft_episodes}})
    arms = arms_to_run(args.spear_key, args.spear_values)

    records: dict[str, list[dict]] = {label: [] for label in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))  # ABBA: drift hits all
            for i, label in enumerate(order):
                preset, overrides = arms[label]
                print(f"repeat {rep + 1}/{args.repeats}: {label} ...", flush=True)
                records[label] += run_once(
                    args.env,
                    preset,
                    args.steps,
                    args.seed,
                    Path(tmp),
                    f"r{rep}a{i}",
                    deep_merge(extra, overrides),
                )

    summary = {label: summarise(recs) for label, recs in records.items()}
    base = summary["drbot"]
    keys = (*PARTS, "update_s_per_1k_tokens")
    ratios = {
        label: {k: s[k] / base[k] if base[k] else float("nan") for k in keys}
        for label, s in summary.items()
        if label != "drbot"
    }
    print(
        f"\n{args.env}: median seconds per step over {args.steps} steps x {args.repeats} runs each"
    )
    labels = list(summary)
    print(
        "| part | " + " | ".join(labels) + " | " + " | ".join(f"{x} / drbot" for x in ratios) + " |"
    )
    print("|---" * (len(labels) + len(ratios) + 1) + "|")
    for key in keys:
        cells = [f"{summary[x][key]:.3f}" for x in labels] + [
            f"{r[key]:.3f}" for r in ratios.values()
        ]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for label in labels:
        print(
            f"{label}: replayed samples per step {summary[label]['replayed_per_step']:.1f}, "
            f"trained tokens per step {summary[label]['trained_tokens_per_step']:.0f}, "
            f"replay term / rest of its own step {summary[label]['replay_share_of_own_step']:.3f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "overrides": extra, "summary": summary, "ratios": ratios},
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
