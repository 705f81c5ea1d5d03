"""A run folder on disk: creating it, its saved config, its result file.

`runs/<name>/` holds config.yaml, metrics.jsonl, samples/, checkpoints/, curves.png and result.json
(README: "A run folder"); checkpoints themselves are written by checkpoint.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spear_rl.envs.base import Env
from spear_rl.train.checkpoint import (
    SFT_POLICY_DIR,
    CheckpointWriteError,
    RunFolderError,
    checkpoint_step,
    complete_checkpoints,
    latest_checkpoint,
    load_state,
)
from spear_rl.train.config import (
    Config,
    ConfigError,
    config_from_dict,
    deep_merge,
    read_yaml_mapping,
    validate_config,
)
from spear_rl.train.metrics import (
    check_log_extras,
    read_metrics,
    truncate_metrics,
    write_text_atomic,
)
from spear_rl.train.runtime import make_env_factory, pick_device, set_threads


@dataclass
class TrainResult:
    """What a finished run reports (also written to RUN_DIR/result.json)."""

    run_dir: Path
    success_before: float
    success_after: float
    wall_seconds: float
    steps: int
    eval_episodes: int  # held-out episodes behind each success rate

    def change_line(self) -> str:
        """Held-out success before and after RL, each with its binomial std, and whether the
        change is beyond the evaluation noise (2 std of the difference of the two estimates)."""
        n = max(1, self.eval_episodes)
        std_before = math.sqrt(self.success_before * (1 - self.success_before) / n)
        std_after = math.sqrt(self.success_after * (1 - self.success_after) / n)
        change = self.success_after - self.success_before
        noise = math.sqrt(std_before**2 + std_after**2)
        if noise == 0:
            verdict = "no change" if change == 0 else "beyond the evaluation noise"
        else:
            ratio = abs(change) / noise
            where = "beyond" if ratio >= 2 else "within"
            verdict = f"{ratio:.1f} std of the evaluation noise: {where} it"
        return (
            f"held-out success: {self.success_before:.3f} ± {std_before:.3f} at the warm start "
            f"(frozen, before RL) -> {self.success_after:.3f} ± {std_after:.3f} after "
            f"{self.steps} steps ({self.eval_episodes} episodes each; change {change:+.3f}, "
            f"{verdict})"
        )


def write_result(result: TrainResult) -> None:
    write_text_atomic(
        result.run_dir / "result.json",
        json.dumps(dataclasses.asdict(result), default=str, indent=2),
    )


@dataclass
class RunStart:
    """A run that passed every check it can pass before work begins (see `start_run`)."""

    cfg: Config
    run_dir: Path
    created: bool  # this call made the folder: a start that fails with nothing saved removes it
    checkpoint: Path | None  # None: a fresh start, or RL from the run's saved SFT warm start
    state: dict[str, Any] | None  # the checkpoint's state, already loaded (so known to be whole)
    device: torch.device
    env_factory: Callable[[], Env]


def start_run(
    cfg: Config | None, resume: str | Path | None, overrides: dict[str, Any] | None
) -> RunStart:
    """Check what can be checked before any work (config, device, env and its kwargs, logging
    extras; on resume: a checkpoint that loads and a target not below its step), then make the
    folder, or cut a resumed run's metrics back to its checkpoint. Nothing on disk changes until
    every check passed."""
    if resume is not None:
        run_dir = Path(resume)
        cfg = load_run_config(run_dir, overrides)
    if cfg is None:
        raise ValueError("train() needs a config or a run folder to resume")
    validate_config(cfg)
    set_threads(cfg)
    device = pick_device(cfg.train.device)
    env_factory = make_env_factory(cfg)
    check_log_extras(cfg.log)
    if resume is None:
        run_dir, created, checkpoint, state = *make_run_dir(cfg, report_created=True), None, None
    else:
        created = False
        checkpoint, state = resume_point(run_dir, cfg)
        truncate_metrics(run_dir / "metrics.jsonl", state["step"] if state else -1)
    write_text_atomic(run_dir / "config.yaml", cfg.to_yaml())
    return RunStart(cfg, run_dir, created, checkpoint, state, device, env_factory)


def resume_point(run_dir: Path, cfg: Config) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest complete checkpoint and its state; (None, None) when the run stopped after SFT
    but before its first checkpoint (RL then starts from the saved warm start)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        if (run_dir / SFT_POLICY_DIR).is_dir():
            return None, None
        raise RunFolderError(
            f"{run_dir} has no complete checkpoint and no saved SFT warm start to resume from: "
            "start the run again (another train.run_name, or delete the folder)"
        )
    state = load_state(checkpoint)
    if cfg.train.steps < state["step"]:
        raise ConfigError(
            f"train.steps={cfg.train.steps} is below the step of {checkpoint} "
            f"(step {state['step']}): resume with --train.steps={state['step']} or more"
        )
    if cfg.train.steps == state["step"] and (run_dir / "result.json").is_file():
        raise ConfigError(
            f"{run_dir} is finished at step {state['step']}: give a larger --train.steps to extend it"
        )
    return checkpoint, state


def discard_if_empty(start: RunStart) -> bool:
    """Remove a folder this run made when a failed or interrupted start left nothing in it worth
    keeping (no logged step, no checkpoint, no saved warm start); True if removed."""
    run_dir = start.run_dir
    metrics = run_dir / "metrics.jsonl"
    logged = metrics.is_file() and metrics.stat().st_size > 0
    kept = complete_checkpoints(run_dir) or (run_dir / SFT_POLICY_DIR).is_dir()
    if not start.created or logged or kept:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def checkpoint_failed(run_dir: Path, err: CheckpointWriteError) -> RunFolderError:
    """After a failed checkpoint write: cut the metrics back to the newest complete checkpoint, so
    that the folder is one consistent run, and say so."""
    checkpoint = latest_checkpoint(run_dir)
    step = checkpoint_step(checkpoint) if checkpoint is not None else 0
    truncate_metrics(run_dir / "metrics.jsonl", step if checkpoint is not None else -1)
    where = f"step {step} (its checkpoint)" if checkpoint is not None else "its start"
    return RunFolderError(
        f"{err}; the run folder is kept consistent at {where}, metrics cut back to it: free "
        f"space and continue with `spear train --resume {run_dir}`"
    )


def env_label(name: str) -> str:
    """An env name fit for a folder name: an import path `pkg.module:Class` gives `Class` (a colon
    is not allowed in Windows paths)."""
    return name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] if ":" in name else name


def make_run_dir(cfg: Config, report_created: bool = False):
    """The new run's folder; with `report_created`, `(folder, whether this call made it)`."""
    name = cfg.train.run_name or (
        f"{env_label(cfg.env.name)}-{cfg.log.preset or 'run'}-seed{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir = Path(cfg.train.output_dir) / name
    if (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: pick another train.run_name or use --resume"
        )
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")  # a folder that exists but cannot be written fails here, not later
        probe.unlink()
    except OSError as err:
        raise RunFolderError(
            f"train.output_dir={cfg.train.output_dir}: cannot make the run folder {run_dir} "
            f"({err.strerror or err}); choose a writable folder"
        ) from None
    return (run_dir, created) if report_created else run_dir


def load_run_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run folder written by `spear train`"
        )
    data = read_yaml_mapping(path, "run config")
    try:
        cfg = config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config_from_dict(deep_merge(data, overrides)) if overrides else cfg


def last_eval_success(run_dir: Path) -> float:
    values = [r["eval/success_rate"] for r in read_metrics(run_dir) if "eval/success_rate" in r]
    return float(values[-1]) if values else float("nan")
