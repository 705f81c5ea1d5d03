"""The runs of an experiment folder: its rows (presets, the frozen control, variants), every run's
config built and checked before any starts, and the check that a run folder already there holds
the run a command asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spear_rl.experiments.frozen import FROZEN
from spear_rl.train.config import Config, ConfigError, deep_merge, load_config, parse_overrides
from spear_rl.train.run_dir import load_run_config

# Keys that say where a run is written, how fast it runs or what it shows, not what it learns: a
# run folder whose config.yaml differs from the command's only in these is still the same run
# (and resumes under the command's values of them, the two path keys aside).
NOT_COMPARED = (
    "train.output_dir",
    "train.run_name",
    "train.threads",
    "train.checkpoint_every",
    "sft.cache_dir",
    "model.cache_dir",
    "env.workers",
    "env.num_workers",
    "env.cpus_per_worker",
    "env.ray_address",
    "log.progress",
    "log.tensorboard",
    "log.wandb",
    "log.wandb_project",
    "log.sample_trajectories",
)


@dataclass(frozen=True)
class Row:
    """A row of the table: its name (also the run folders' prefix), the preset recipe it runs and
    a variant's own overrides."""

    name: str
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)


def parse_row(spec: str) -> Row:
    """`spear` -> the preset; `NAME=PRESET:key=value,key=value` -> a variant of PRESET."""
    if "=" not in spec.split(":", 1)[0]:
        return Row(spec, spec)
    name, rest = spec.split("=", 1)
    recipe, _, sets = rest.partition(":")
    pairs = [s for s in sets.split(",") if s]
    bad = [p for p in pairs if "=" not in p]
    if not name or "/" in name or not recipe or recipe == FROZEN or bad or name == FROZEN:
        raise ConfigError(
            f"variant {spec!r}: write NAME=PRESET:key=value,key=value (e.g. "
            "spear-noreplay=spear:replay.enabled=false); NAME has no '/', PRESET is a trained preset"
        )
    return Row(name, recipe, parse_overrides([f"--{p}" for p in pairs]))


@dataclass
class PlannedRun:
    row: Row
    seed: int
    run_dir: Path
    cfg: Config


def plan_runs(
    env_recipes: str, rows: list[Row], seeds: list[int], out_dir: Path, overrides: dict[str, Any]
) -> list[PlannedRun]:
    """Every run's config, built (so checked) before the first run starts: a bad override or
    preset fails in a second, not after hours of the runs before it."""
    trained = [r for r in rows if r.name != FROZEN] or [Row("_base", "_base")]
    plan = []
    for row in rows:
        # the frozen control takes a trained row's recipe, so the same warm start
        source = trained[0] if row.name == FROZEN else row
        for seed in seeds:
            run_dir = out_dir / f"{row.name}-seed{seed}"
            over = deep_merge(
                deep_merge(overrides, source.overrides),
                {
                    "train": {"seed": seed, "run_name": run_dir.name, "output_dir": str(out_dir)},
                    "log": {"preset": row.name},
                },
            )
            plan.append(
                PlannedRun(row, seed, run_dir, load_config(f"{env_recipes}/{source.recipe}", over))
            )
    return plan


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(run_dir: Path, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """key -> (the run folder's value, `cfg`'s) for every key that differs, NOT_COMPARED included."""
    saved, wanted = flat(load_run_config(run_dir).to_dict()), flat(cfg.to_dict())
    return {
        k: (saved.get(k), wanted.get(k))
        for k in sorted(saved.keys() | wanted.keys())
        if saved.get(k) != wanted.get(k)
    }


def check_same_config(run: PlannedRun) -> None:
    """A run folder already there must hold the run this command asks for: else its table would
    mix settings, or a resume would continue another run."""
    if not (run.run_dir / "config.yaml").is_file():
        return
    diffs = {
        k: v for k, v in config_differences(run.run_dir, run.cfg).items() if k not in NOT_COMPARED
    }
    if diffs:
        shown = ", ".join(f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in list(diffs.items())[:4])
        more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise ConfigError(
            f"{run.run_dir} holds a run of another config: {shown}{more}; "
            "give the overrides it was started with, or another output folder"
        )


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
