"""The learning table (benchmarks/learning.py, issue 32) on hand-made curves: area under the curve,
steps to half of the best method's final success, differences paired by seed with their sign
count; variants; the script's --baseline check and its --tables-only rebuild from run folders."""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from spear_rl.experiments.compare import build_report
from spear_rl.experiments.learning import jsonable, learning_markdown, learning_summary
from spear_rl.experiments.plan import parse_row
from spear_rl.experiments.tables import area_under_curve, paired_difference, steps_to_reach
from spear_rl.fields import ConfigError
from spear_rl.train.config import parse_overrides

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learning.py"


def test_area_under_curve_is_a_mean_over_uneven_steps():
    # 10 steps rising 0 -> 0.5 (area 2.5), then 20 steps flat at 0.5 (area 10), over 30 steps
    assert area_under_curve([0, 10, 30], [0.0, 0.5, 0.5]) == pytest.approx(12.5 / 30)
    assert area_under_curve([5], [0.3]) == 0.3
    assert math.isnan(area_under_curve([], []))


def test_steps_to_reach_is_the_first_step_at_or_above():
    curve = {"steps": [0, 5, 10, 15], "success": [0.1, 0.2, 0.2, 0.4]}
    assert steps_to_reach(curve, 0.2) == 5.0  # at, not only above
    assert math.isnan(steps_to_reach(curve, 0.5))


def test_paired_difference_counts_the_seeds_where_the_sign_holds():
    paired = paired_difference({0: 0.3, 1: 0.5, 2: 0.1, 3: 0.9}, {0: 0.1, 1: 0.2, 2: 0.2})
    # seed 3 has no baseline (still running): left out, not a NaN for the whole column
    assert paired.per_seed == pytest.approx({0: 0.2, 1: 0.3, 2: -0.1})
    assert paired.mean == pytest.approx(0.4 / 3)
    assert paired.std == pytest.approx(
        math.sqrt(((0.2 - 0.4 / 3) ** 2 + (0.3 - 0.4 / 3) ** 2 + (-0.1 - 0.4 / 3) ** 2) / 2)
    )
    assert paired.sign_holds == 2 and paired.cell().endswith("(2 of 3)")
    behind = paired_difference({0: 10.0, 1: 30.0}, {0: 20.0, 1: math.nan})
    assert behind.per_seed == {0: -10.0} and behind.sign_holds == 1


def _run(seed: int, steps: list[int], success: list[float], late: float = 0.5) -> dict:
    return {
        "preset": None,
        "seed": seed,
        "status": "finished",
        "eval_success": [[s, v] for s, v in zip(steps, success, strict=True)],
        "late_train_success": late,
        "wall_seconds": 10.0,
    }


def _records() -> dict:
    steps = [0, 10, 20, 30]
    curves = {
        # final means: grpo 0.2, spear 0.6 (the best method: half-best is 0.3), frozen 0.1
        "grpo": {0: [0.1, 0.1, 0.2, 0.1], 1: [0.1, 0.2, 0.3, 0.3]},
        "spear": {0: [0.1, 0.3, 0.5, 0.6], 1: [0.1, 0.2, 0.2, 0.6]},
        "frozen": {0: [0.1, 0.1, 0.1, 0.1], 1: [0.1, 0.1, 0.1, 0.1]},
    }
    records = {}
    for preset, by_seed in curves.items():
        for seed, success in by_seed.items():
            late = None if preset == "frozen" else 0.5
            records[f"{preset}-seed{seed}"] = {**_run(seed, steps, success, late), "preset": preset}
    return records


def test_learning_summary_on_hand_made_curves():
    report = build_report("sokoban", _records(), ["grpo", "spear", "frozen"])
    summary = learning_summary(report, ["grpo"])
    assert summary["best_method"] == "spear"  # frozen is a control, never the best method
    assert summary["half_best_target"] == pytest.approx(0.3)
    rows = summary["rows"]
    assert rows["spear"]["final"] == pytest.approx((0.6, 0.0))
    # AUC of spear seed 0: 10 * (0.2 + 0.4 + 0.55) / 30
    assert rows["spear"]["per_seed"]["auc"][0] == pytest.approx(11.5 / 30)
    # spear reaches 0.3 at step 10 (seed 0) and 30 (seed 1); grpo only on seed 1, at step 20
    assert rows["spear"]["per_seed"]["steps_to_half"] == {0: 10.0, 1: 30.0}
    assert rows["spear"]["steps_to_half"] == {"mean": 20.0, "reached": 2, "n": 2}
    assert math.isnan(rows["grpo"]["per_seed"]["steps_to_half"][0])
    assert rows["frozen"]["steps_to_half"]["reached"] == 0
    assert math.isnan(rows["frozen"]["late_train_success"][0])

    vs = summary["paired"]["grpo"]["spear"]
    assert vs["final"].per_seed == pytest.approx({0: 0.5, 1: 0.3})
    assert vs["final"].sign_holds == 2
    # steps pair only seed 1, where both reach (30 - 20); seed 0 is reached by spear alone
    assert vs["steps_to_half"].per_seed == {1: 10.0}
    assert (vs["reached_only_here"], vs["reached_only_by_baseline"]) == (1, 0)

    markdown = learning_markdown(summary, "sokoban")
    assert "(spear, 0.600 / 2 = 0.300)" in markdown
    assert "| spear | 0,1 | 0.600 ± 0.000 |" in markdown
    assert "| frozen | 0,1 | 0.100 ± 0.000 | 0.100 ± 0.000 | not reached (0/2) | — |" in markdown
    assert "+10.0 ± 0.0 (1 of 1); 1 seed(s) reached only by spear" in markdown
    assert "+0.400 ± 0.141 (2 of 2)" in markdown
    # JSON: no NaN (null instead), seeds as keys
    text = json.dumps(jsonable(summary), allow_nan=False)
    assert json.loads(text)["paired"]["grpo"]["spear"]["final"]["n"] == 2


def test_a_baseline_without_runs_is_said_so():
    records = {k: v for k, v in _records().items() if not k.startswith("grpo")}
    summary = learning_summary(build_report("sokoban", records, ["spear"]), ["grpo"])
    assert "no finished run of grpo in this folder yet" in learning_markdown(summary, "t")


def test_variants_parse_into_named_rows():
    row = parse_row("spear-noreplay=spear:replay.enabled=false,train.lr=1e-5")
    assert (row.name, row.recipe) == ("spear-noreplay", "spear")
    # typed as the same overrides on the command line would be
    assert row.overrides == parse_overrides(["--replay.enabled=false", "--train.lr=1e-5"])
    assert row.overrides["replay"] == {"enabled": False}
    assert parse_row("grpo").overrides == {} and parse_row("grpo").recipe == "grpo"
    # a value with a colon (an import path, a dataset) stays whole
    assert parse_row("m=spear:env.kwargs.dataset=arith:arithmetic").overrides == {
        "env": {"kwargs": {"dataset": "arith:arithmetic"}}
    }
    for bad in ("x=frozen:train.lr=1", "x=spear:replay.enabled", "a/b=spear:train.lr=1"):
        with pytest.raises(ConfigError, match="NAME=PRESET"):
            parse_row(bad)


def test_a_baseline_outside_the_rows_is_refused(tmp_path, capsys, monkeypatch):
    argv = [str(SCRIPT), "--presets", "drbot,spear", "--baseline", "grpo", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 2
    assert "--baseline grpo is not among the rows (drbot,spear)" in capsys.readouterr().err


def _run_folder(env_dir: Path, preset: str, seed: int, success: list[float]) -> None:
    run_dir = env_dir / f"{preset}-seed{seed}"
    run_dir.mkdir(parents=True)
    cfg = {"log": {"preset": preset}, "train": {"seed": seed, "steps": 10}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = [{"step": s, "rollout/success_rate": 0.5} for s in range(1, 11)]
    lines += [{"step": s, "eval/success_rate": v} for s, v in zip((0, 5, 10), success, strict=True)]
    lines.sort(key=lambda r: r["step"])
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "result.json").write_text(json.dumps({"wall_seconds": 3.0}))


def test_tables_only_rebuilds_from_the_run_folders(tmp_path, capsys):
    env_dir = tmp_path / "sokoban"
    _run_folder(env_dir, "grpo", 0, [0.1, 0.2, 0.2])
    _run_folder(env_dir, "spear", 0, [0.1, 0.3, 0.4])
    (env_dir / "spear-seed1").mkdir()  # unfinished: not a row of the table
    argv = ["--envs", "sokoban", "--out", str(tmp_path), "--presets", "grpo,spear", "--tables-only"]
    assert runpy.run_path(str(SCRIPT))["cli"](argv) == 0
    markdown = (env_dir / "learning.md").read_text()
    assert "| spear | 0 | 0.400 ± 0.000 | 0.275 ± 0.000 | 5.0 (1/1 seeds) |" in markdown
    assert "| spear | +0.200 ± 0.000 (1 of 1) |" in markdown
    records = json.loads((env_dir / "runs.json").read_text())
    assert sorted(records) == ["grpo-seed0", "spear-seed0"]
    assert records["spear-seed0"]["eval_success"] == [[0, 0.1], [5, 0.3], [10, 0.4]]
    assert (env_dir / "compare.png").is_file() and (env_dir / "learning.json").is_file()
