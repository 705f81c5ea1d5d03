"""`OUT/runs.json`: one record per run of an experiment folder, the state its tables are built from.

A record is condensed from the run folder (config.yaml, metrics.jsonl, result.json) when the run
finishes: preset (the table row), seed, step budget, the held-out curve, training success over the
last quarter of the steps, wall time and the last step's metrics. Git keeps runs.json while the
run folders stay local, so the tables can be rebuilt from it alone. Several processes may share a
folder: every change re-reads the file under the folder lock and replaces it whole.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spear_rl.experiments.locking import folder_lock
from spear_rl.experiments.tables import metric_curve
from spear_rl.train.config import read_yaml_mapping
from spear_rl.train.metrics import read_metrics, write_text_atomic

RUNS_FILE = "runs.json"
FINISHED, FAILED = "finished", "failed"
# what only the process that ran a run knows (its row's recipe and overrides, whether it resumed):
# kept when a record is condensed again from the run folder
PLAN_FIELDS = ("recipe", "overrides", "resumed")


def summarise_run(run_dir: Path) -> dict[str, Any]:
    """The record of a finished run folder."""
    cfg = read_yaml_mapping(run_dir / "config.yaml", "run config")
    records = read_metrics(run_dir)
    steps, success = metric_curve(records, "eval/success_rate")
    result = json.loads((run_dir / "result.json").read_text())
    last_step: dict[str, Any] = {}
    for r in records:  # one step may span several records (training, then its evaluation)
        if r["step"] == records[-1]["step"]:
            last_step.update({k: v for k, v in r.items() if k != "step"})
    return {
        "preset": cfg["log"]["preset"],
        "seed": cfg["train"]["seed"],
        "status": FINISHED,
        "steps": cfg["train"]["steps"],
        "eval_success": [[s, v] for s, v in zip(steps, success, strict=True)],
        "late_train_success": _number_or_none(late_training_success(records)),
        "wall_seconds": result["wall_seconds"],
        "last_step": last_step,
    }


def late_training_success(records: list[dict]) -> float:
    """Mean training-rollout success over the last quarter of the steps. Every method of a seed
    draws the same training tasks at each step, so this compares methods on the same episodes'
    tasks, a larger sample than one evaluation; NaN for a run without training (frozen)."""
    values = metric_curve(records, "rollout/success_rate")[1]
    tail = values[-max(1, len(values) // 4) :]
    return statistics.fmean(tail) if tail else float("nan")


def _number_or_none(x: float) -> float | None:
    return None if x != x else x  # JSON has no NaN


def read_records(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / RUNS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def update_records(
    folder: Path,
    changes: dict[str, dict[str, Any]],
    then: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Put `changes` (run folder name -> its whole record) into runs.json and, still under the
    folder lock, call `then` with every record (to rewrite the tables from the latest state)."""
    with folder_lock(folder):
        records = {**read_records(folder), **changes}
        if changes:
            write_text_atomic(folder / RUNS_FILE, json.dumps(records, indent=1) + "\n")
        if then is not None:
            then(records)
    return records


def refreshed(folder: Path, run_dirs: list[Path]) -> dict[str, dict[str, Any]]:
    """The records of these finished run folders, condensed again, with their plan fields."""
    known = read_records(folder)
    return {
        d.name: {
            **{k: v for k, v in known.get(d.name, {}).items() if k in PLAN_FIELDS},
            **summarise_run(d),
        }
        for d in run_dirs
    }


def finished_run_dirs(folder: Path) -> list[Path]:
    """The run folders under `folder` that hold a finished run."""
    return sorted(p.parent for p in folder.glob("*/result.json"))
