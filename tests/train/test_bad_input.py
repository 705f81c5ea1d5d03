"""Bad input a person can make: each is one line on stderr naming the file or key (exit code 2),
no traceback, no run folder left behind, and nothing already saved changed."""

from __future__ import annotations

import pytest

from spear_rl.cli import main
from spear_rl.train.metrics import read_metrics


def one_line_error(capsys) -> str:
    """The error line (`spear train` first prints the resolved config it will run)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("spear train: error: "), err
    return last


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


# ---- a failed start leaves no run folder; checks come before the folder where they can ---------
def tiny_argv(tmp_path, *extra: str) -> list[str]:
    return [
        "train",
        f"--train.output_dir={tmp_path}",
        "--train.run_name=r",
        "--train.steps=1",
        "--sft.episodes=2",
        "--train.eval_episodes=2",
        "--train.batch_tasks=1",
        "--log.progress=false",
        *extra,
    ]


def wandb_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


@pytest.mark.parametrize(
    "override, names",
    [
        ("--env.name=nope", "nope"),
        ("--env.kwargs.bogus=1", "bogus"),
        ("--env.name=webshop_http", "env.kwargs.url"),
        ("--model.name_or_path=/nonexistent/model", "/nonexistent/model"),
        pytest.param(
            "--log.wandb=true",
            "wandb",
            marks=pytest.mark.skipif(wandb_installed(), reason="wandb is installed here"),
        ),
        pytest.param(
            "--train.device=cuda",
            "train.device",
            marks=pytest.mark.skipif(
                __import__("torch").cuda.is_available(), reason="this machine has CUDA"
            ),
        ),
    ],
)
def test_a_failed_start_leaves_no_run_folder(tmp_path, capsys, override, names):
    assert main(tiny_argv(tmp_path, override)) == 2
    assert names in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_an_output_dir_that_is_a_file_is_named(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("mine")
    assert main(tiny_argv(tmp_path, f"--train.output_dir={target}")) == 2
    err = one_line_error(capsys)
    assert "train.output_dir" in err and str(target) in err
    assert target.read_text() == "mine"


def test_an_output_dir_that_cannot_be_written_is_named(tmp_path, capsys, monkeypatch):
    """The machine runs tests as root, for whom no folder is read-only: the mkdir's refusal is
    simulated where it happens."""
    from pathlib import Path

    real_mkdir = Path.mkdir
    locked = tmp_path / "locked"

    def mkdir(self, *args, **kwargs):
        if self == locked or locked in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(tiny_argv(tmp_path, f"--train.output_dir={locked}")) == 2
    err = one_line_error(capsys)
    assert "train.output_dir" in err and str(locked) in err and "Permission denied" in err


def test_too_little_disk_for_one_checkpoint_is_found_at_the_start(tmp_path, capsys, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "spear_rl.train.checkpoint.shutil.disk_usage", lambda path: usage(2**30, 2**30, 1024)
    )
    assert main(tiny_argv(tmp_path)) == 2
    err = one_line_error(capsys)
    assert "MiB free but one checkpoint needs about" in err and str(tmp_path) in err
    assert list(tmp_path.iterdir()) == []  # found before SFT: nothing was worth keeping


# ---- resume: a bad run folder or target is refused, and nothing saved is changed ---------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    argv = tiny_argv(out, "--train.steps=2", "--train.checkpoint_every=1")
    assert main(argv) == 0
    return out / "r"


def snapshot(run_dir) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def run_copy(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "r"
    shutil.copytree(finished_run, copy)
    return copy


def test_resume_below_the_checkpoint_step_is_refused(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--train.steps=1"]) == 2
    err = one_line_error(capsys)
    assert "train.steps=1" in err and "step 2" in err
    assert snapshot(run_copy) == before
    # a finished run resumed to its own length has nothing to do, and rewrites nothing
    assert main(["train", "--resume", str(run_copy)]) == 2
    assert "is finished at step 2" in one_line_error(capsys)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content", [b"", b"PK\x03\x04\x00\x00", b"\x80\x04\x95garbage"], ids=["empty", "zip", "pickle"]
)
def test_resume_from_a_damaged_state_file_names_it(run_copy, capsys, content):
    state = run_copy / "checkpoints" / "step_000002" / "state.pt"
    state.write_bytes(content)
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--train.steps=3"]) == 2
    assert str(state) in one_line_error(capsys)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "content, says",
    [
        (b"train: [\n", "is not valid YAML"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"algo:\n  los: 1\n", "algo.los"),
    ],
    ids=["malformed", "not-utf8", "unknown-key"],
)
def test_resume_with_a_broken_run_config_names_it(run_copy, capsys, content, says):
    (run_copy / "config.yaml").write_bytes(content)
    before = snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy)]) == 2
    err = one_line_error(capsys)
    assert says in err and str(run_copy / "config.yaml") in err
    assert snapshot(run_copy) == before


# ---- `spear eval RUN` repeats the run's own evaluation of that checkpoint ----------------------
def test_spear_eval_agrees_with_the_runs_own_evaluation(finished_run, capsys):
    logged = [
        r for r in read_metrics(finished_run) if r["step"] == 2 and "eval/episode_reward" in r
    ]
    assert main(["eval", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "± " in out and "standard error" in out and "sampling seed" in out
    assert "(same episodes and seed)" in out
    for key in ("eval/success_rate", "eval/episode_reward", "eval/turns", "eval/invalid_rate"):
        assert f"  {key}: {logged[-1][key]:.4g}\n" in out, key
    # another seed is said to be another seed
    assert main(["eval", str(finished_run), "--seed", "123"]) == 0
    out = capsys.readouterr().out
    assert "sampling seed 123" in out and "expect a difference" in out
