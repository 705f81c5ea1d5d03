"""Where a run's numbers go: JSONL always (flushed every step), TensorBoard and wandb when asked,
and a live progress line on the terminal."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from spear_rl.train.config import LogConfig


class MissingExtraError(RuntimeError):
    pass


def check_log_extras(cfg: LogConfig) -> None:
    """The optional loggers a run asks for are installed (checked before the run folder is made)."""
    import importlib.util

    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise MissingExtraError(
            "log.tensorboard=true needs tensorboard: pip install 'spear-rl[tensorboard]'"
        )
    if cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise MissingExtraError("log.wandb=true needs wandb: pip install wandb")


class MetricsLogger:
    def __init__(
        self, run_dir: Path, cfg: LogConfig, config_dict: dict[str, Any], resume: bool
    ) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._file = self.path.open("a" if resume else "w", encoding="utf-8")
        self._tb = None
        self._wandb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingExtraError(
                    "log.tensorboard=true needs tensorboard: pip install 'spear-rl[tensorboard]'"
                ) from None
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                raise MissingExtraError("log.wandb=true needs wandb: pip install wandb") from None
            self._wandb = wandb.init(
                project=cfg.wandb_project,
                name=run_dir.name,
                dir=str(run_dir),
                config=config_dict,
                resume="allow",
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        record = {
            "step": step,
            "time": time.time(),
            **{k: _json_number(v) for k, v in clean.items()},
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def read_metrics(run_dir: Path, warn: bool = True) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl. A torn last line from a crash is skipped. A log that
    goes back in steps (a run resumed by an older version, which did not cut the lines after its
    checkpoint) keeps only the copy the run continued from, and says so with a warning."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a spear-rl run folder?")
    records: list[dict[str, Any]] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        if records and record["step"] < records[-1]["step"]:
            kept = [r for r in records if r["step"] < record["step"]]
            dropped += len(records) - len(kept)
            records = kept
        records.append(record)
    if dropped and warn:
        warnings.warn(
            f"{path}: {dropped} line(s) of steps that were recomputed after a resume were "
            "ignored (the copy the run continued from is used)",
            stacklevel=2,
        )
    return records


def truncate_metrics(path: Path, last_step: int) -> int:
    """Cut a metrics log to the steps <= `last_step` (atomically); returns how many lines went.
    Resume calls it with the checkpoint's step: the steps logged after it before a crash are
    recomputed, so they must not stay as a second copy."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            step = json.loads(line).get("step")
        except (json.JSONDecodeError, AttributeError):
            continue  # a torn line from the crash
        if isinstance(step, int) and step <= last_step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(keep))
    return len(lines) - len(keep)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class Progress:
    """A rich progress bar with live success / reward / entropy; plain lines when not a terminal."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]RL"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._task = self._bar.add_task("train", total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        info = (
            f"success {metrics.get('rollout/success_rate', float('nan')):.2f}  "
            f"reward {metrics.get('reward/mean', float('nan')):+.2f}  "
            f"{update_summary(metrics)}  "
            f"buffer {int(metrics.get('replay/size', 0))}  "
            f"{metrics.get('time/step', 0.0):.1f}s/step"
        )
        if "eval/success_rate" in metrics:
            info += f"  eval {metrics['eval/success_rate']:.2f}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        else:
            print(f"step {step}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def update_summary(metrics: dict[str, float]) -> str:
    """The progress line's word on the update: its entropy, or that there was none (the filters
    can leave no sample to train on; an entropy of `nan` would read like a broken update)."""
    if "actor/entropy" in metrics:
        return f"entropy {metrics['actor/entropy']:.2f}"
    if metrics.get("actor/optimizer_steps", 0.0) > 0 and metrics.get("replay/replayed", 0.0) > 0:
        return "replay-only update"
    return "no update (filters left nothing to train)"


def log_sft_stats(logger: MetricsLogger, sft_stats: dict[str, Any]) -> None:
    logger.log(0, {f"sft/{k}": v for k, v in sft_stats.items() if isinstance(v, int | float)})
