"""A tiny training run that is SIGKILLed at one point of a checkpoint write (for the crash tests
in test_crash_resume.py): nothing of Python's own clean-up runs, as when a machine dies.

    python tests/train/kill_worker.py OUT_DIR RUN_NAME POINT KILL_STEP

POINT: before-temp (the step is logged, its checkpoint not begun), in-state (state.pt half
written), after-rename (the checkpoint folder is complete, `latest` still names the previous one),
after-pointer (`latest` updated, old checkpoints not yet pruned).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_crash_resume import crash_config  # noqa: E402

import spear_rl.train.checkpoint as ckpt  # noqa: E402
from spear_rl.train.trainer import train  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    out, name, point, kill_step = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tag = f"step_{kill_step:06d}"
    save_policy, write_state = ckpt.save_policy, ckpt.write_state
    write_pointer, prune = ckpt.write_pointer, ckpt.prune

    def patched_save_policy(model, tokenizer, path):
        if point == "before-temp" and path.name.endswith(tag):
            die()
        save_policy(model, tokenizer, path)

    def patched_write_state(path, state):
        if point == "in-state" and state["step"] == kill_step:
            with path.open("wb") as f:
                f.write(b"PK\x03\x04" + b"\0" * 1000)  # the first bytes of a zip, then nothing
                f.flush()
                os.fsync(f.fileno())
            die()
        write_state(path, state)

    def patched_write_pointer(root, checkpoint_name):
        if point == "after-rename" and checkpoint_name == tag:
            die()
        write_pointer(root, checkpoint_name)

    def patched_prune(root, keep):
        if point == "after-pointer" and (root / "latest").read_text() == tag:
            die()
        prune(root, keep)

    ckpt.save_policy, ckpt.write_state = patched_save_policy, patched_write_state
    ckpt.write_pointer, ckpt.prune = patched_write_pointer, patched_prune
    torch.set_num_threads(1)
    train(crash_config(Path(out), name), echo=lambda *_: None)
    sys.exit(3)  # not killed: the test fails on this exit code


if __name__ == "__main__":
    main()
