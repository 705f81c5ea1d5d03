"""The learning table (benchmarks/learning.py): the paired "minus baseline" columns and the
script's --baseline check."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from spear_rl.experiments.learning import learning_table

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learning.py"


def _run(tmp_path: Path, preset: str, seed: int, final: float, train: list[float]) -> dict:
    run_dir = tmp_path / f"{preset}-seed{seed}"
    run_dir.mkdir()
    lines = [json.dumps({"step": i + 1, "rollout/success_rate": v}) for i, v in enumerate(train)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    curve = {"steps": [0, 10], "success": [0.1, final]}
    return {"seed": seed, "final_success": final, "run_dir": str(run_dir), "curve": curve}


def test_paired_columns_subtract_the_same_seed(tmp_path):
    runs = {
        "grpo": [
            _run(tmp_path, "grpo", 0, 0.10, [0.0] * 4),
            _run(tmp_path, "grpo", 1, 0.30, [0.2] * 4),
        ],
        "spear": [
            _run(tmp_path, "spear", 0, 0.20, [0.0, 0.0, 0.0, 0.4]),
            _run(tmp_path, "spear", 1, 0.50, [0.6] * 4),
        ],
    }
    table = {
        p: {"final_success": (0.0, 0.0), "auc_success": (0.0, 0.0), "wall_seconds": (1.0, 0.0)}
        for p in runs
    }
    markdown, rows = learning_table({"runs": runs, "table": table}, ["grpo"])
    mean, std = rows["spear"]["final_minus_grpo"]
    # seed by seed: 0.20 - 0.10 and 0.50 - 0.30, not the difference of the means alone
    assert mean == pytest.approx(0.15)
    assert std == pytest.approx(0.0707, abs=1e-3)
    # the last quarter of 4 training steps is the last step
    assert rows["spear"]["late_train_minus_grpo"][0] == pytest.approx(0.4)
    assert rows["grpo"]["final_minus_grpo"] == (0.0, 0.0)
    assert "steps to reach grpo final (0.200)" in markdown


def test_a_baseline_outside_the_presets_is_refused(capsys, monkeypatch):
    argv = [str(SCRIPT), "--presets", "drbot,spear", "--baseline", "grpo"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 2
    assert "--baseline grpo is not among --presets drbot,spear" in capsys.readouterr().err
