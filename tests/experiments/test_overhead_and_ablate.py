"""The overhead measurement (arms, the replay share of SPEAR's own step), the ablation (the
columns paired by seed with learning.py's runs), on hand-written metrics; the WebShop funnel's
checkpoint names."""

import json
from pathlib import Path

import pytest

from spear_rl.experiments import ablate, overhead
from spear_rl.experiments.webshop_funnel import checkpoint_label


def test_overhead_arms_vary_one_spear_key_against_one_drbot():
    assert overhead.arms_to_run(None, None) == {"drbot": ("drbot", {}), "spear": ("spear", {})}
    arms = overhead.arms_to_run("replay.replay_ratio", "1.0,0.125")
    assert arms == {
        "drbot": ("drbot", {}),
        "spear replay.replay_ratio=1.0": ("spear", {"replay": {"replay_ratio": 1.0}}),
        "spear replay.replay_ratio=0.125": ("spear", {"replay": {"replay_ratio": 0.125}}),
    }
    with pytest.raises(SystemExit, match="--spear-values"):
        overhead.arms_to_run("replay.replay_ratio", None)


def test_overhead_replay_share_is_replay_seconds_over_the_rest_of_the_same_steps():
    records = [
        {"time/step": 10.0, "time/update": 6.0, "time/update_replay": 2.0, "time/generate": 3.0},
        {"time/step": 14.0, "time/update": 9.0, "time/update_replay": 4.0, "time/generate": 4.0},
    ]
    for r in records:
        r.update({"time/env": 0.5, "time/replay_maintenance": 0.01})
        r.update({"actor/valid_tokens": 100.0, "replay/valid_tokens": 50.0, "replay/replayed": 8})
    out = overhead.summarise(records)
    assert out["replay_share_of_own_step"] == pytest.approx(6.0 / (24.0 - 6.0))
    assert out["time/update_replay"] == pytest.approx(3.0)  # the median of 2 and 4
    assert out["trained_tokens_per_step"] == pytest.approx(150.0)
    assert out["update_s_per_1k_tokens"] == pytest.approx(1000 * 15.0 / 300.0)


def _write_run(folder: Path, name: str, evals: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).mkdir()
    lines = [json.dumps({"step": 10 * i, "eval/success_rate": v}) for i, v in enumerate(evals)]
    (folder / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_ablate_pairs_each_value_with_the_same_seed_of_a_preset(tmp_path):
    learning = tmp_path / "learning"
    _write_run(learning, "spear-seed0", [0.1, 0.30])
    _write_run(learning, "spear-seed1", [0.1, 0.20])
    curves = {
        "0.25": {"eval/success_rate": [([0, 10], [0.1, 0.25]), ([0, 10], [0.1, 0.30])]},
    }
    rows, table = ablate.paired_rows(curves, ["eval/success_rate"], [0, 1], learning, ["spear"])
    assert table["0.25"]["eval/success_rate"]["spear"] == pytest.approx([-0.05, 0.10])
    assert "| 0.25 | eval/success_rate | spear | 0.025 ± 0.106 | -0.050 / +0.100 | 1 of 2 |" in rows


def test_webshop_funnel_names_a_checkpoint_by_its_run():
    label = checkpoint_label
    assert label(Path("runs/spear-mb64/checkpoints/step_000030")) == "spear-mb64/step_000030"
    assert label(Path("runs/spear-mb32/checkpoints/step_000030")) == "spear-mb32/step_000030"
    assert label(Path("elsewhere/my_policy")) == "my_policy"
