"""Checkpoints: everything stateful, written atomically, so that `--resume` continues the same run.

Layout: RUN_DIR/checkpoints/step_000010/{model/ (HF save_pretrained + tokenizer; a LoRA policy
merged), adapter/ (LoRA runs only: the adapters, for resuming), state.pt}
and RUN_DIR/checkpoints/latest (the name of the newest complete checkpoint).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from spear_rl.models.loading import save_policy


def rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, state: dict[str, Any], keep: int = 2
) -> Path:
    """Write step `step`; a crash mid-write leaves the previous checkpoint as `latest`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()  # no shard-writing bar in the middle of the run's own
    save_policy(model, tokenizer, tmp)
    torch.save({**state, "rng": rng_states(), "step": step}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (root / "latest.tmp").write_text(final.name)
    (root / "latest.tmp").replace(root / "latest")
    if keep > 0:
        for old in sorted(root.glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.pt").is_file() else None


def load_state(checkpoint: Path) -> dict[str, Any]:
    # our own file: it holds python objects (replay samples, RNG tuples), not only tensors
    return torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=False)
