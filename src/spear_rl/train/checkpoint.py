"""Checkpoints: everything stateful, written atomically, so that `--resume` continues the same run.

Layout: RUN_DIR/checkpoints/step_000010/{model/ (HF save_pretrained + tokenizer; a LoRA policy
merged), adapter/ (LoRA runs only: the adapters, for resuming), optimizer/ (FSDP runs only: each
rank's shard of the optimiser state, a torch.distributed.checkpoint folder; dist_state.py),
state.pt} and RUN_DIR/checkpoints/latest (the name of the newest complete checkpoint, for people and tools).

The write sequence: a temporary folder `.tmp_step_N` gets the model, then state.pt (flushed to
disk); it is renamed to `step_N` (the moment the checkpoint exists), then `latest` is replaced,
then old checkpoints beyond `keep` are removed. A crash at any point leaves either the previous
checkpoints or the new one complete; resume finds the newest complete one by scanning the
folders, never by trusting `latest` (which a crash can leave one step behind, or missing).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from spear_rl.models.loading import save_policy

STATE_FILE = "state.pt"
# The policy right after the SFT warm start, kept in the run folder until the first checkpoint so
# that a crash or Ctrl-C between the two does not throw the warm start away (warm_start.py).
SFT_POLICY_DIR = "sft_policy"
_STEP_DIR = re.compile(r"step_(\d+)")
_STATE_KEYS = ("optimizer", "scheduler", "replay", "rng", "step", "success_before")


class RunFolderError(RuntimeError):
    """A run folder or checkpoint that cannot be used as asked; the message names the path."""


class CheckpointWriteError(RunFolderError):
    """A checkpoint could not be written (e.g. the disk is full); the previous ones are intact."""


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
    run_dir: Path,
    step: int,
    model,
    tokenizer,
    state: dict[str, Any],
    keep: int = 2,
    move_in: dict[str, Path] | None = None,
) -> Path:
    """Write step `step`; a crash mid-write leaves the previous checkpoints complete. `state` may
    carry its own "rng" (the states at the end of the step, for a save made later, on Ctrl-C).
    `move_in`: folders written beforehand (by every rank: FSDP's optimiser shards), moved into
    the checkpoint under these names before its state file. Raises CheckpointWriteError, with
    nothing of the new checkpoint left behind, when the write fails (disk full, permissions)."""
    root = run_dir / "checkpoints"
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp_step_*"):  # left by a crash: never complete
            shutil.rmtree(stale, ignore_errors=True)
        hf_logging.disable_progress_bar()  # no shard-writing bar in the middle of the run's own
        save_policy(model, tokenizer, tmp)
        for name, folder in (move_in or {}).items():
            Path(folder).rename(tmp / name)
        write_state(tmp / STATE_FILE, {"rng": rng_states(), **state, "step": step})
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(
            f"could not write the checkpoint of step {step} to {tmp} "
            f"({type(err).__name__}: {err.strerror or err})"
        ) from err
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_pointer(root, final.name)
    prune(root, keep)
    shutil.rmtree(run_dir / SFT_POLICY_DIR, ignore_errors=True)  # a checkpoint supersedes it
    return final


def write_state(path: Path, state: dict[str, Any]) -> None:
    with path.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes the checkpoint count


def write_pointer(root: Path, name: str) -> None:
    (root / "latest.tmp").write_text(name)
    (root / "latest.tmp").replace(root / "latest")


def prune(root: Path, keep: int) -> None:
    if keep > 0:
        for old in complete_checkpoints(root.parent)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def checkpoint_step(path: Path) -> int:
    match = _STEP_DIR.fullmatch(path.name)
    if match is None:
        raise RunFolderError(f"{path} is not a checkpoint folder (step_NNNNNN)")
    return int(match.group(1))


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first: `step_N` folders with a model and a state
    file (a folder only gets its name once both are written)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if _STEP_DIR.fullmatch(p.name) and (p / STATE_FILE).is_file() and (p / "model").is_dir()
    ]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, found by scanning (see the module docstring)."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load_state(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's state; a damaged file is a RunFolderError naming it and what to do."""
    path = checkpoint / STATE_FILE
    try:
        # our own file: it holds python objects (replay samples, RNG tuples), not only tensors
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        ValueError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
        OSError,
    ) as err:
        raise RunFolderError(
            f"{path} is damaged ({type(err).__name__}: {str(err)[:200]}); move {checkpoint.name} "
            "out of the checkpoints folder to resume from the one before it"
        ) from None
    missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise RunFolderError(
            f"{path} is not a spear-rl checkpoint state (missing {', '.join(missing)}); move "
            f"{checkpoint.name} out of the checkpoints folder to resume from the one before it"
        )
    if state["step"] != checkpoint_step(checkpoint):
        raise RunFolderError(
            f"{path} holds step {state['step']} but its folder says {checkpoint.name}"
        )
    from spear_rl.train.dist_state import is_sharded_reference

    optim = state["optimizer"]
    if is_sharded_reference(optim):  # FSDP: each rank's shard in a folder of the checkpoint
        shards = checkpoint / optim["dir"]
        if not (shards / ".metadata").is_file():
            raise RunFolderError(
                f"{shards} (the sharded optimiser state) is missing or incomplete; move "
                f"{checkpoint.name} out of the checkpoints folder to resume from the one before it"
            )
        state["optimizer"] = {**optim, "path": str(shards)}  # wherever the run folder now is
    return state


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About how many bytes one checkpoint takes: the weights as saved, plus the optimiser state
    (the trainer's AdamW keeps two moments per trainable parameter, in the parameter's dtype;
    counted before the optimiser exists, so the check can run before SFT)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + 2 * trainable


def check_free_space(run_dir: Path, needed: int) -> None:
    """Refuse to start a run that could not write even one checkpoint (found at once, not at the
    first checkpoint an hour in)."""
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise RunFolderError(
            f"{run_dir} has {free / 2**20:.0f} MiB free but one checkpoint needs about "
            f"{needed / 2**20:.0f} MiB: free space or set train.output_dir elsewhere"
        )
