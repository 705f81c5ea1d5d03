"""Kill a run at each point of a checkpoint write (a real SIGKILL, in a subprocess), resume it,
and require exactly the run that was never killed: one metrics line per step, the same numbers,
the same final weights. The killed window always holds real optimiser steps."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import tiny_config

from spear_rl.train.checkpoint import latest_checkpoint
from spear_rl.train.trainer import train

WORKER = Path(__file__).parent / "kill_worker.py"
STEPS, EVERY, KILL_STEP = 6, 2, 4


def is_timing(key: str) -> bool:
    return key.startswith("time") or key.endswith(("seconds", "tokens_per_s"))


def crash_config(out: Path, name: str, **extra):
    train_keys = {"steps": STEPS, "checkpoint_every": EVERY, "eval_every": 3}
    return tiny_config(out, name, train={**train_keys, **extra.pop("train", {})}, **extra)


def by_step(run_dir: Path) -> dict[int, list[dict]]:
    """Every line of the log as written (no reader's de-duplication), grouped by step."""
    records = collections.defaultdict(list)
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        records[r["step"]].append({k: v for k, v in r.items() if not is_timing(k)})
    return dict(records)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{STEPS:06d}" / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    return train(crash_config(out, "straight"), echo=lambda *_: None).run_dir


@pytest.mark.parametrize(
    "point, resumes_from",
    [("before-temp", 2), ("in-state", 2), ("after-rename", 4), ("after-pointer", 4)],
)
def test_a_kill_anywhere_in_a_checkpoint_write_resumes_to_the_same_run(
    straight, tmp_path, point, resumes_from
):
    killed = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), "killed", point, str(KILL_STEP)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "killed"
    # the step was logged before its checkpoint: the log is ahead of the newest checkpoint
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == KILL_STEP
    assert latest_checkpoint(run_dir).name == f"step_{resumes_from:06d}"

    expected = by_step(straight)
    window = range(resumes_from + 1, KILL_STEP + 1)  # steps the kill threw away, recomputed
    assert all(expected[s][0]["actor/optimizer_steps"] >= 1 for s in window)

    echoed: list[str] = []
    train(resume=run_dir, echo=echoed.append)
    assert any(f"at step {resumes_from}" in line for line in echoed), echoed
    got = by_step(run_dir)
    counts = {step: len(lines) for step, lines in got.items()}
    assert counts == {step: len(lines) for step, lines in expected.items()}
    assert all(counts[s] == 1 for s in range(1, STEPS + 1))  # one line per step
    assert got == expected  # the same numbers, bit for bit
    a, b = final_weights(straight), final_weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((run_dir / "checkpoints").glob(".tmp_*"))


def assert_same_as_straight(straight: Path, run_dir: Path) -> None:
    expected, got = by_step(straight), by_step(run_dir)
    assert {s: len(v) for s, v in got.items()} == {s: len(v) for s, v in expected.items()}
    assert got == expected
    a, b = final_weights(straight), final_weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def interrupt_when_logged(monkeypatch, step: int, times: int = 1) -> None:
    """Press Ctrl-C (a real SIGINT to this process) right after `step` is logged."""
    import os

    from spear_rl.train.metrics import MetricsLogger

    log = MetricsLogger.log

    def log_then_interrupt(self, logged_step, metrics):
        log(self, logged_step, metrics)
        if logged_step == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MetricsLogger, "log", log_then_interrupt)


def test_ctrl_c_stops_at_the_step_end_with_a_checkpoint(straight, tmp_path, monkeypatch):
    from spear_rl.train.interrupt import TrainingInterrupted

    interrupt_when_logged(monkeypatch, 3)  # checkpoints are due at 2, 4, 6
    run_dir = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted) as stopped:
        train(crash_config(tmp_path, "stopped"), echo=lambda *_: None)
    assert f"--resume {run_dir}` continues from step 3" in str(stopped.value)
    assert latest_checkpoint(run_dir).name == "step_000003"
    monkeypatch.undo()
    train(resume=run_dir, echo=lambda *_: None)
    assert_same_as_straight(straight, run_dir)


def test_a_second_ctrl_c_stops_at_once_and_resume_still_matches(straight, tmp_path, monkeypatch):
    from spear_rl.train.interrupt import TrainingInterrupted

    interrupt_when_logged(monkeypatch, 3, times=2)
    run_dir = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted, match="continues from step 2"):
        train(crash_config(tmp_path, "stopped"), echo=lambda *_: None)
    monkeypatch.undo()
    train(resume=run_dir, echo=lambda *_: None)
    assert_same_as_straight(straight, run_dir)


def test_ctrl_c_after_sft_keeps_the_warm_start(straight, tmp_path, monkeypatch):
    """Stopped during the step-0 evaluation, after SFT: resume starts RL from the saved warm start
    (no SFT again) and gives the run that was never stopped."""
    from spear_rl.train.interrupt import TrainingInterrupted

    interrupt_when_logged(monkeypatch, 0)  # the SFT stats line
    run_dir = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted, match="SFT warm start is saved"):
        train(crash_config(tmp_path, "stopped"), echo=lambda *_: None)
    assert latest_checkpoint(run_dir) is None
    monkeypatch.undo()
    echoed: list[str] = []
    train(resume=run_dir, echo=echoed.append)
    assert any("SFT warm start loaded from the run folder" in line for line in echoed), echoed
    assert_same_as_straight(straight, run_dir)
    assert not (run_dir / "sft_policy").exists()  # the first checkpoint supersedes it


def test_ctrl_c_during_sft_says_nothing_can_be_resumed(tmp_path, monkeypatch):
    from spear_rl.train.interrupt import TrainingInterrupted

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("spear_rl.train.warm_start.sft_warm_start", pressed)
    with pytest.raises(TrainingInterrupted, match="start the run again"):
        train(crash_config(tmp_path, "stopped"), echo=lambda *_: None)
    assert not (tmp_path / "stopped").exists()  # nothing in it was worth keeping


def test_a_failed_checkpoint_write_keeps_the_run_consistent(straight, tmp_path, monkeypatch):
    import errno

    import spear_rl.train.checkpoint as ckpt
    from spear_rl.train.checkpoint import RunFolderError

    write_state = ckpt.write_state

    def disk_full_at_step_4(path, state):
        if state["step"] == KILL_STEP:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_state(path, state)

    monkeypatch.setattr(ckpt, "write_state", disk_full_at_step_4)
    run_dir = tmp_path / "full"
    with pytest.raises(RunFolderError) as failed:
        train(crash_config(tmp_path, "full"), echo=lambda *_: None)
    message = str(failed.value)
    assert "No space left on device" in message and "step 4" in message and "step 2" in message
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2  # no metrics beyond the last checkpoint
    assert not list((run_dir / "checkpoints").glob(".tmp_*"))
    monkeypatch.undo()
    train(resume=run_dir, echo=lambda *_: None)
    assert_same_as_straight(straight, run_dir)
