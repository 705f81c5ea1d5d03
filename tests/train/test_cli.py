"""The `spear` command line: help, overrides for `compare`, one-line errors for user mistakes and
tracebacks for everything else."""

from __future__ import annotations

import pytest

from spear_rl import cli
from spear_rl.cli import main


def test_bare_spear_prints_help_and_starts_nothing(capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("bare `spear` must not start a run")

    monkeypatch.setattr(cli, "cmd_train", no_training)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spear") and "train" in out and "compare" in out
    # options without a command: help, and a hint, but no run either
    assert main(["--train.steps=2"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: spear")
    assert "choose a command (e.g. spear train --train.steps=2)" in captured.err


def test_compare_takes_the_same_overrides_as_train(tmp_path, monkeypatch):
    """Every run of `spear compare` is built with the command line's overrides."""
    built = []

    def fake_train(cfg, echo=print):
        built.append(cfg)
        raise KeyboardInterrupt  # stop after the first run was configured

    monkeypatch.setattr("spear_rl.experiments.compare.train", fake_train)
    argv = ["compare", "--presets", "grpo,spear", "--seeds", "3", "--out", str(tmp_path / "c")]
    assert main([*argv, "--train.steps=2", "--rollout.group_size", "4"]) == 130
    (cfg,) = built
    assert (cfg.train.steps, cfg.rollout.group_size, cfg.train.seed) == (2, 4, 3)
    assert cfg.log.preset == "grpo"


def test_compare_checks_every_config_before_the_first_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "spear_rl.experiments.compare.train", lambda *a, **k: pytest.fail("no run may start")
    )
    out = tmp_path / "c"
    assert main(["compare", "--out", str(out), "--train.stepz=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.stepz" in err and "train.steps" in err and "\n" not in err
    assert main(["compare", "--presets", "spear,nope", "--out", str(out)]) == 2
    assert "sokoban/nope" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["compare", "--seeds", "a,b"])
    assert "seeds must be integers" in capsys.readouterr().err


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    """Only user-caused errors become one line; a bug (here a ValueError from deep inside) must
    surface with its traceback, not as a one-line 'error' that hides where it came from."""

    def bug(*args, **kwargs):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(cli, "cmd_train", bug)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["train"])


def test_resume_with_recipe_is_a_one_line_usage_error(capsys):
    assert main(["train", "--resume", "somewhere", "--recipe", "sokoban/spear"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "spear train: error: --resume continues a run with its saved config; drop --recipe"
    )
