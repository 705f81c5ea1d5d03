"""What SPEAR costs per training step over Dr.BoT, on the same recipe, seeds and batch.

Runs the Dr.BoT and SPEAR presets of one environment in one process, in ABBA order (so drift in
machine load hits both alike), and reports wall time per step and its split (generate / env /
update / replay maintenance) as SPEAR / Dr.BoT ratios. Because the two policies diverge after the
first update, it also reports update time per trained token, which isolates the extra
forward/backward of the replay term from differences in episode length.

    python benchmarks/overhead.py --env sokoban --steps 8 --repeats 2 [--train.threads=1 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from spear_rl.train.config import deep_merge, load_config, parse_overrides
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

PARTS = ("time/step", "time/generate", "time/env", "time/update", "time/replay_maintenance")


def run_once(
    env: str, preset: str, steps: int, seed: int, out: Path, tag: str, extra: dict
) -> list[dict]:
    overrides = deep_merge(
        extra,
        {
            "train": {
                "steps": steps,
                "seed": seed,
                "eval_every": 0,
                "eval_episodes": 8,
                "checkpoint_every": 0,
                "output_dir": str(out),
                "run_name": f"{preset}-{tag}",
            },
            "log": {"progress": False},
        },
    )
    result = train(load_config(f"{env}/{preset}", overrides), echo=lambda *_: None)
    return [r for r in read_metrics(result.run_dir) if r["step"] > 0]


def summarise(records: list[dict]) -> dict[str, float]:
    out = {key: statistics.median(r[key] for r in records if key in r) for key in PARTS}
    tokens = sum(
        r.get("actor/valid_tokens", 0.0) + r.get("replay/valid_tokens", 0.0) for r in records
    )
    out["update_s_per_1k_tokens"] = 1000 * sum(r["time/update"] for r in records) / max(tokens, 1.0)
    out["replayed_per_step"] = statistics.fmean(r.get("replay/replayed", 0.0) for r in records)
    out["trained_tokens_per_step"] = tokens / len(records)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="sokoban")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="ABBA pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-episodes", type=int, default=None, help="override sft.episodes")
    parser.add_argument("--out", default="benchmarks/results/overhead.json")
    args, rest = parser.parse_known_args()
    extra = parse_overrides(rest)  # e.g. --train.threads=1
    if args.sft_episodes is not None:
        extra = deep_merge(extra, {"sft": {"episodes": args.sft_episodes}})

    records: dict[str, list[dict]] = {"drbot": [], "spear": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = ("drbot", "spear") if rep % 2 == 0 else ("spear", "drbot")
            for preset in order:
                print(f"repeat {rep + 1}/{args.repeats}: {preset} ...", flush=True)
                records[preset] += run_once(
                    args.env, preset, args.steps, args.seed, Path(tmp), f"r{rep}", extra
                )

    summary = {preset: summarise(recs) for preset, recs in records.items()}
    ratios = {
        key: summary["spear"][key] / summary["drbot"][key]
        if summary["drbot"][key]
        else float("nan")
        for key in (*PARTS, "update_s_per_1k_tokens")
    }
    print(
        f"\n{args.env}: median seconds per step over {args.steps} steps x {args.repeats} runs each"
    )
    print(f"| {'part':28s} | {'Dr.BoT':>8s} | {'SPEAR':>8s} | {'SPEAR/Dr.BoT':>12s} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 10}|{'-' * 14}|")
    for key in (*PARTS, "update_s_per_1k_tokens"):
        print(
            f"| {key:28s} | {summary['drbot'][key]:8.3f} | {summary['spear'][key]:8.3f} | {ratios[key]:12.3f} |"
        )
    print(
        f"replayed samples per step (SPEAR): {summary['spear']['replayed_per_step']:.1f}; "
        f"trained tokens per step: Dr.BoT {summary['drbot']['trained_tokens_per_step']:.0f}, "
        f"SPEAR {summary['spear']['trained_tokens_per_step']:.0f}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, "ratios": ratios}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
