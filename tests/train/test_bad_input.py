"""Bad input a person can make: each is one line on stderr naming the file or key (exit code 2),
no traceback, no run folder left behind, and nothing already saved changed."""

from __future__ import annotations

import pytest

from spear_rl.cli import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("spear train: error: "), err
    return err


@pytest.mark.parametrize(
    "override, key",
    [
        ("--train.lr=nan", "train.lr"),
        ("--train.lr=inf", "train.lr"),
        ("--train.lr=-0.001", "train.lr"),
        ("--train.seed=-1", "train.seed"),
        ("--rollout.temperature=nan", "rollout.temperature"),
        ("--replay.coef=-1", "replay.coef"),
        ("--algo.clip_high=.inf", "algo.clip_high"),
    ],
)
def test_bad_numbers_fail_before_a_run_starts(tmp_path, capsys, override, key):
    argv = ["train", override, f"--train.output_dir={tmp_path}", "--train.run_name=r"]
    assert main(argv) == 2
    assert key in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content, says",
    [
        (b"train:\n  steps: \xff\xfe\n", "is not UTF-8 text"),
        (b"train:\n  steps: [1,\n  x: }\n", "is not valid YAML (line 3)"),
        (b"- a list\n", "must be a mapping of sections"),
    ],
    ids=["not-utf8", "malformed", "not-a-mapping"],
)
def test_an_unreadable_recipe_is_named(tmp_path, capsys, content, says):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(content)
    assert main(["train", "--recipe", str(recipe), f"--train.output_dir={tmp_path}"]) == 2
    err = one_line_error(capsys)
    assert str(recipe) in err and says in err
    assert recipe.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == [
        "recipe.yaml"
    ]
