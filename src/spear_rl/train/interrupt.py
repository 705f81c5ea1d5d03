"""Ctrl-C during training: stop at a step boundary with a checkpoint, and say how to go on.

The first Ctrl-C in the RL loop asks the loop to finish the step it is in, write a checkpoint of
it and stop (a step stopped halfway would leave the policy between two steps, which no checkpoint
can hold); a second Ctrl-C stops at once. Either way the run ends with `TrainingInterrupted`,
whose message names the run folder and the step `--resume` will continue from.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spear_rl.train.checkpoint import SFT_POLICY_DIR, checkpoint_step, latest_checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; str() says where it is and from which step it resumes."""


@dataclass
class StopRequest:
    armed: bool = False  # set by the loop: before it (SFT, first evaluation) Ctrl-C stops at once
    requested: bool = False


@contextlib.contextmanager
def stop_at_step_end(echo: Callable[[str], None]) -> Iterator[StopRequest]:
    """Within the block, once `.armed`, the first Ctrl-C sets `.requested` (the loop checks it
    after each step); a second, or any before arming, raises KeyboardInterrupt as usual. Signals
    reach only the main thread, so elsewhere (a run started from a worker thread) Ctrl-C keeps its
    plain behaviour."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame) -> None:
        if request.requested or not request.armed:
            raise KeyboardInterrupt
        request.requested = True
        echo("\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted(run_dir: Path) -> TrainingInterrupted:
    """The exception to raise when a run stops on Ctrl-C, with what `--resume` will do."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        return TrainingInterrupted(
            f"interrupted; `spear train --resume {run_dir}` continues from step "
            f"{checkpoint_step(checkpoint)} (its checkpoint {checkpoint.name})"
        )
    if (run_dir / SFT_POLICY_DIR).is_dir():
        return TrainingInterrupted(
            f"interrupted before the first checkpoint; the SFT warm start is saved: "
            f"`spear train --resume {run_dir}` starts RL from it (step 0)"
        )
    if not run_dir.exists():
        return TrainingInterrupted(
            f"interrupted before anything was saved (the empty run folder {run_dir} was "
            "removed): start the run again"
        )
    return TrainingInterrupted(
        f"interrupted before anything could be resumed (no checkpoint and no finished SFT warm "
        f"start in {run_dir}): start the run again"
    )
