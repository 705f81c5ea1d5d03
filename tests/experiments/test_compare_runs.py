"""One experiment folder, several processes (benchmarks/learning.py, `spear compare`): a run is
done once, under its lock; a stale lock is taken over; a killed run resumes from its checkpoint; a
folder without one starts again; a folder of another config is refused before anything runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spear_rl.experiments.compare import RunsFailed, compare
from spear_rl.experiments.locking import RUN_LOCK, RunBusy, lock_run
from spear_rl.experiments.plan import flat
from spear_rl.fields import ConfigError
from spear_rl.train.metrics import read_metrics

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learning.py"
TINY = {
    "model": {"tiny_layers": 1, "tiny_hidden": 64, "tiny_heads": 2, "tiny_vocab": 512},
    "rollout": {"group_size": 4, "max_turns": 3},
    "sft": {"episodes": 8, "epochs": 1},
    "train": {"steps": 1, "batch_tasks": 2, "eval_every": 1, "eval_episodes": 4, "threads": 1},
    "replay": {"warmup_steps": 1},
    "log": {"progress": False},
}


def tiny_args(**train) -> list[str]:
    over = {**TINY, "train": {**TINY["train"], **train}}
    return [f"--{k}={v}" for k, v in flat(over).items()]


def learning(out: Path, presets: str, seeds: str, *extra: str) -> list[str]:
    first = presets.split(",")[0]
    rows = ["--presets", presets, "--seeds", seeds, "--baseline", first]
    return [sys.executable, str(SCRIPT), "--envs", "sokoban", "--out", str(out), *rows, *extra]


def test_a_held_lock_refuses_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "spear-seed0"
    with lock_run(run_dir) as lock:
        with pytest.raises(RunBusy, match=f"pid {os.getpid()} on "):
            lock_run(run_dir)  # another open of the file: flock refuses it, even in one process
        assert json.loads((run_dir / RUN_LOCK).read_text())["pid"] == os.getpid()
    assert lock.fd == -1 and not (run_dir / RUN_LOCK).exists()
    # a process that dies holding the lock leaves the file behind, but not the flock
    code = (
        "import os, pathlib, sys\n"
        "from spear_rl.experiments.locking import lock_run\n"
        "lock = lock_run(pathlib.Path(sys.argv[1]))\n"
        "os._exit(0)  # dies holding it, without a release\n"
    )
    subprocess.run([sys.executable, "-c", code, str(run_dir)], check=True, timeout=60)
    dead = json.loads((run_dir / RUN_LOCK).read_text())["pid"]
    said = []
    with lock_run(run_dir, echo=said.append):
        assert json.loads((run_dir / RUN_LOCK).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and "taking over a stale lock" in said[0] and f"pid {dead} " in said[0]


def test_locked_runs_are_left_and_runs_without_checkpoint_start_again(tmp_path):
    out = tmp_path / "sokoban"
    over = {**TINY, "train": {**TINY["train"], "checkpoint_every": 0}}
    # spear-seed0 was started once and died before a checkpoint: only a log line is left
    (out / "spear-seed0").mkdir(parents=True)
    leftover = '{"step": 0, "eval/success_rate": 0.5, "leftover": true}\n'
    (out / "spear-seed0" / "metrics.jsonl").write_text(leftover)
    said: list[str] = []
    with lock_run(out / "grpo-seed0"):  # another process is running grpo-seed0
        report = compare("sokoban", ["grpo", "spear"], [0], out, over, echo=said.append)
    assert any("grpo-seed0 is being run by pid" in line for line in said)
    assert any("no checkpoint to resume from; starting it again" in line for line in said)
    assert list(report["runs"]) == ["spear"]
    assert not any("leftover" in r for r in read_metrics(out / "spear-seed0"))
    assert [r["step"] for r in read_metrics(out / "spear-seed0") if "eval/success_rate" in r] == [
        0,
        1,
    ]
    said.clear()
    report = compare("sokoban", ["grpo", "spear"], [0], out, over, echo=said.append)
    assert [line for line in said if line.startswith("===")] == ["=== grpo seed 0 ==="]
    assert list(report["runs"]) == ["grpo", "spear"]
    # a command with another config is refused before any run starts
    other = {**over, "train": {**over["train"], "steps": 2}}
    with pytest.raises(
        ConfigError,
        match=r"grpo-seed0 holds a run of another config: train.steps \(1 there, 2 here\)",
    ):
        compare("sokoban", ["grpo", "spear", "frozen"], [0], out, other, echo=said.append)
    assert not (out / "frozen-seed0").exists()


def test_two_processes_on_one_folder_never_run_a_run_twice(tmp_path):
    """This process and a `learning.py` process work through one folder at the same time."""
    # a trained row and the frozen control (evaluations only), whose runs are quick
    over = {**TINY, "train": {**TINY["train"], "checkpoint_every": 0}}
    cmd = learning(tmp_path, "spear,frozen", "0,1", *tiny_args(checkpoint_every=0))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (tmp_path / "sokoban" / "spear-seed0" / RUN_LOCK).exists():  # it took its first run
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    said: list[str] = []
    compare("sokoban", ["spear", "frozen"], [0, 1], tmp_path / "sokoban", over, echo=said.append)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    started = [
        line
        for line in [*said, *output.splitlines()]
        if line.startswith("=== ") and line.endswith(" ===") and "being run by" not in line
    ]
    expected = [f"=== {p} seed {s} ===" for p in ("spear", "frozen") for s in (0, 1)]
    assert sorted(started) == sorted(expected), (said, output)
    assert "=== spear seed 0 ===" in output.splitlines()  # the other process's: this one left it
    records = json.loads((tmp_path / "sokoban" / "runs.json").read_text())
    assert sorted(records) == ["frozen-seed0", "frozen-seed1", "spear-seed0", "spear-seed1"]
    assert {r["status"] for r in records.values()} == {"finished"}
    # only learning.py writes learning.md: if this process finished the last run, the other's
    # last table is older; a --tables-only rebuild writes it from every finished run
    cmd = learning(tmp_path, "spear,frozen", "0,1", "--tables-only", *tiny_args(checkpoint_every=0))
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    markdown = (tmp_path / "sokoban" / "learning.md").read_text()
    assert "| frozen | 0,1 |" in markdown and "| spear | 0,1 |" in markdown


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "sokoban" / "spear-seed0"
    train = {"steps": 4, "eval_every": 2, "checkpoint_every": 1}
    cmd = learning(tmp_path, "spear", "0", *tiny_args(**train))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "step_000001").is_dir():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "result.json").exists(), "the run finished before it could be killed"
    assert (run_dir / RUN_LOCK).exists()  # left by the killed process
    said: list[str] = []
    over = {**TINY, "train": {**TINY["train"], **train}}
    compare("sokoban", ["spear"], [0], tmp_path / "sokoban", over, echo=said.append)
    assert any("taking over a stale lock" in line for line in said), said
    assert "=== spear seed 0: resuming " + str(run_dir) + " ===" in said
    assert any(line.startswith("resumed from") for line in said)
    steps = [r["step"] for r in read_metrics(run_dir) if "eval/success_rate" in r]
    assert steps == [0, 2, 4]
    train_steps = [r["step"] for r in read_metrics(run_dir) if "rollout/success_rate" in r]
    assert train_steps == [1, 2, 3, 4]  # each step once: the resume cut the log back
    record = json.loads((tmp_path / "sokoban" / "runs.json").read_text())["spear-seed0"]
    assert record["status"] == "finished" and record["resumed"] is True


def test_a_failed_run_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken_train(cfg, echo=print):
        raise ValueError("boom")

    monkeypatch.setattr("spear_rl.experiments.compare.train", broken_train)
    out = tmp_path / "sokoban"
    with pytest.raises(RunsFailed, match="1 run\\(s\\) failed: spear-seed0"):
        compare("sokoban", ["spear", "frozen"], [0], out, TINY, echo=lambda _: None)
    records = json.loads((out / "runs.json").read_text())
    assert records["spear-seed0"]["status"] == "failed"
    assert records["spear-seed0"]["error"] == "ValueError: boom"
    assert records["frozen-seed0"]["status"] == "finished"
    assert "| frozen | 0 |" in (out / "compare.md").read_text()
