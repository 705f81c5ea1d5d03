"""benchmarks/threads.py's bookkeeping (the measurements take minutes): what environment each
candidate's `spear train` gets, the phase means read back from a run, and the loaded / idle
summary, a stalled run included."""

import argparse
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("threads")


def test_default_gets_no_openmp_policy_so_it_measures_what_spear_train_chooses(bench):
    parent = {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "7"}
    default = bench.child_env("default", parent)
    assert default == {"PATH": "/bin", "OMP_DISPLAY_ENV": "VERBOSE"}
    assert bench.child_env("spin", parent)["GOMP_SPINCOUNT"] == "300000"
    assert "OMP_WAIT_POLICY" not in bench.child_env("spin", parent)
    assert bench.CANDIDATES["one"][1] == ["--train.threads=1"]


def write_metrics(run_dir: Path, steps: list[tuple[float, float, float]]) -> None:
    run_dir.mkdir(parents=True)
    lines = [{"step": 0, "eval/success_rate": 0.1}]  # an evaluation line: no phase times
    lines += [
        {"step": i + 1, "time/step": s, "time/generate": g, "time/update": u}
        for i, (s, g, u) in enumerate(steps)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_phase_seconds_are_means_over_the_logged_steps(bench, tmp_path):
    write_metrics(tmp_path / "run", [(10.0, 4.0, 5.0), (12.0, 6.0, 5.0)])
    assert bench.phase_seconds(tmp_path / "run") == {
        "step_s": 11.0,
        "generate_s": 5.0,
        "update_s": 5.0,
        "steps_done": 2,
    }
    assert bench.phase_seconds(tmp_path / "never-started") == {}


def run(candidate, condition, step, wall, timed_out=False, load=1.0):
    phases = {} if step is None else {"step_s": step, "generate_s": step / 2, "update_s": step / 4}
    return {
        "candidate": candidate,
        "condition": condition,
        "timed_out": timed_out,
        "wall_s": wall,
        "cpu_s": wall,
        "load_at_start": load,
        **phases,
    }


def test_summary_is_loaded_over_idle_and_a_stalled_run_keeps_its_finished_steps(bench, capsys):
    runs = [
        run("default", "idle", 8.0, 30.0),
        run("default", "loaded", 12.0, 40.0),
        run("default", "idle", 10.0, 34.0),
        run("default", "loaded", 14.0, 44.0),
        run("spin", "idle", 8.0, 30.0),
        run("spin", "loaded", 80.0, 240.0, timed_out=True),  # one step done before the timeout
        run("one", "idle", 14.0, 40.0),
        run("one", "loaded", None, 240.0, timed_out=True),  # no step at all
    ]
    summary = bench.summarise(runs)
    default = summary["default"]
    assert default["idle"]["step_s"] == 9.0 and default["loaded"]["step_s"] == 13.0
    assert default["loaded_over_idle"]["step_s"] == pytest.approx(13.0 / 9.0)
    assert default["loaded_over_idle"]["wall_s"] == pytest.approx(42.0 / 32.0)
    spin = summary["spin"]
    assert spin["loaded_over_idle"]["step_s"] == 10.0 and spin["loaded"]["timed_out"] == 1
    assert spin["loaded"]["wall_s"] is None and spin["loaded_over_idle"]["wall_s"] is None
    assert summary["one"]["loaded_over_idle"]["step_s"] is None
    table_args = argparse.Namespace(recipe="sokoban/spear", batch_tasks=8, steps=2, repeats=2)
    bench.print_table(summary, table_args)
    out = capsys.readouterr().out
    assert "| one | 14.00 | timeout | timeout |" in out
    assert "default: loaded s/step is 1.44x its idle time (meets the 2x target)" in out
