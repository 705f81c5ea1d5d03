"""Where a run's numbers go: JSONL always (flushed every step), TensorBoard and wandb when asked,
and a live progress line on the terminal."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from spear_rl.train.config import LogConfig


class MissingExtraError(RuntimeError):
    pass


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


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (a torn last line from a crash is skipped)."""
    records = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a spear-rl run folder?")
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


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
            f"entropy {metrics.get('actor/entropy', float('nan')):.2f}  "
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
