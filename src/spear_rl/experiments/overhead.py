"""The cost measurement of `benchmarks/overhead.py`: Dr.BoT and SPEAR runs of one recipe, each
run's median seconds per step and their split, update time per trained token, and the replay
term's share of SPEAR's own step."""

from __future__ import annotations

import statistics
from pathlib import Path

from spear_rl.train.config import deep_merge, load_config, parse_overrides
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

PARTS = (
    "time/step",
    "time/generate",
    "time/env",
    "time/update",
    "time/update_replay",
    "time/replay_maintenance",
)


def run_once(
    env: str, preset: str, steps: int, seed: int, out: Path, tag: str, extra: dict
) -> list[dict]:
    """One training run; `tag` makes its folder unique, `extra` holds config overrides."""
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
    """Median seconds of each part per step, update seconds per 1k trained tokens, replayed
    samples and trained tokens per step, and the replay term's share of the run's own steps."""
    out = {key: statistics.median(r[key] for r in records if key in r) for key in PARTS}
    tokens = sum(
        r.get("actor/valid_tokens", 0.0) + r.get("replay/valid_tokens", 0.0) for r in records
    )
    out["update_s_per_1k_tokens"] = 1000 * sum(r["time/update"] for r in records) / max(tokens, 1.0)
    out["replayed_per_step"] = statistics.fmean(r.get("replay/replayed", 0.0) for r in records)
    out["trained_tokens_per_step"] = tokens / len(records)
    # The replay term's seconds over the rest of the same steps: SPEAR's overhead with its own
    # rollouts held fixed (the Dr.BoT ratio also carries the two policies' different episodes).
    replay_s = sum(r.get("time/update_replay", 0.0) for r in records)
    out["replay_share_of_own_step"] = replay_s / (sum(r["time/step"] for r in records) - replay_s)
    return out


def arms_to_run(spear_key: str | None, spear_values: str | None) -> dict[str, tuple[str, dict]]:
    """label -> (preset, overrides): Dr.BoT, and SPEAR once per value of `spear_key`."""
    arms: dict[str, tuple[str, dict]] = {"drbot": ("drbot", {})}
    if not spear_key:
        arms["spear"] = ("spear", {})
        return arms
    if not spear_values:
        raise SystemExit("--spear-key needs --spear-values (comma-separated)")
    for raw in spear_values.split(","):
        arms[f"spear {spear_key}={raw}"] = ("spear", parse_overrides([f"--{spear_key}={raw}"]))
    return arms
