"""A run folder on disk: creating it, its saved config, its result file.

`runs/<name>/` holds config.yaml, metrics.jsonl, samples/, checkpoints/, curves.png and result.json
(README: "A run folder"); checkpoints themselves are written by checkpoint.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spear_rl.train.config import Config, config_from_dict, deep_merge
from spear_rl.train.metrics import read_metrics


@dataclass
class TrainResult:
    """What a finished run reports (also written to RUN_DIR/result.json)."""

    run_dir: Path
    success_before: float
    success_after: float
    wall_seconds: float
    steps: int


def write_result(result: TrainResult) -> None:
    (result.run_dir / "result.json").write_text(
        json.dumps(dataclasses.asdict(result), default=str, indent=2)
    )


def make_run_dir(cfg: Config) -> Path:
    name = cfg.train.run_name or (
        f"{cfg.env.name}-{cfg.log.preset or 'run'}-seed{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir = Path(cfg.train.output_dir) / name
    if (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: pick another train.run_name or use --resume"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_run_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run folder written by `spear train`"
        )
    data = yaml.safe_load(path.read_text())
    return config_from_dict(deep_merge(data, overrides) if overrides else data)


def last_eval_success(run_dir: Path) -> float:
    values = [r["eval/success_rate"] for r in read_metrics(run_dir) if "eval/success_rate" in r]
    return float(values[-1]) if values else float("nan")
