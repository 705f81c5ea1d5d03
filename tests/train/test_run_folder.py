"""Run folders after a crash: checkpoint discovery by scanning, damaged state files, the metrics
log cut back on resume and read without duplicates."""

from __future__ import annotations

import json

import pytest
import torch

from spear_rl.train.checkpoint import (
    RunFolderError,
    check_free_space,
    complete_checkpoints,
    latest_checkpoint,
    load_state,
    save_checkpoint,
)
from spear_rl.train.metrics import read_metrics, truncate_metrics, update_summary


class TinyTokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


class TinyModel(torch.nn.Linear):
    def save_pretrained(self, path, **kwargs):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path / "weights.pt")


@pytest.fixture()
def saved(tmp_path, monkeypatch):
    """A run folder with complete checkpoints of steps 2 and 4 (a stand-in policy writer)."""
    monkeypatch.setattr(
        "spear_rl.train.checkpoint.save_policy",
        lambda model, tok, path: (model.save_pretrained(path / "model"), tok.save_pretrained(path)),
    )
    model = TinyModel(2, 2)
    for step in (2, 4):
        state = {"optimizer": {}, "scheduler": {}, "replay": {}, "success_before": 0.5}
        save_checkpoint(tmp_path, step, model, TinyTokenizer(), state)
    return tmp_path


def test_the_newest_complete_checkpoint_is_found_by_scanning(saved):
    root = saved / "checkpoints"
    assert (root / "latest").read_text() == "step_000004"
    assert latest_checkpoint(saved) == root / "step_000004"
    # a crash after the rename, before the pointer: `latest` is one behind; or missing; or empty
    (root / "latest").write_text("step_000002")
    assert latest_checkpoint(saved) == root / "step_000004"
    (root / "latest").write_text("")
    assert latest_checkpoint(saved) == root / "step_000004"
    (root / "latest").unlink()
    assert latest_checkpoint(saved) == root / "step_000004"
    # a torn temporary folder never counts, even with a higher step
    (root / ".tmp_step_000006" / "model").mkdir(parents=True)
    (root / ".tmp_step_000006" / "state.pt").write_bytes(b"\x80")
    assert latest_checkpoint(saved) == root / "step_000004"
    assert [p.name for p in complete_checkpoints(saved)] == ["step_000002", "step_000004"]


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 truncated zip", bytes(range(256)) * 4, None],
    ids=["empty", "truncated", "random", "not-a-state"],
)
def test_a_damaged_state_file_is_one_line_naming_it(saved, content):
    path = saved / "checkpoints" / "step_000004" / "state.pt"
    if content is None:
        torch.save({"weights": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(RunFolderError) as err:
        load_state(path.parent)
    message = str(err.value)
    assert str(path) in message and "step_000004" in message and "\n" not in message
    assert path.read_bytes() == before  # nothing changed


def test_a_state_file_from_another_step_is_refused(saved):
    root = saved / "checkpoints"
    (root / "step_000004" / "state.pt").write_bytes(
        (root / "step_000002" / "state.pt").read_bytes()
    )
    with pytest.raises(RunFolderError, match="holds step 2 but its folder says step_000004"):
        load_state(root / "step_000004")


def test_too_little_free_space_is_refused_with_the_folder_named(tmp_path):
    with pytest.raises(RunFolderError, match=f"{tmp_path} has .* MiB free"):
        check_free_space(tmp_path, 2**62)
    check_free_space(tmp_path, 1)


def write_log(path, steps):
    path.write_text(
        "".join(json.dumps({"step": s, "x": float(i)}) + "\n" for i, s in enumerate(steps))
    )


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    log = tmp_path / "metrics.jsonl"
    write_log(log, [0, 0, 1, 2, 3])
    with log.open("a") as f:
        f.write('{"step": 4, "x"')  # torn by the kill
    assert truncate_metrics(log, 2) == 2  # step 3 and the torn line
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 0, 1, 2]
    assert truncate_metrics(log, 2) == 0


def test_readers_keep_the_continued_copy_of_duplicated_steps_and_say_so(tmp_path):
    """A log written by a resume that did not cut it (older versions): steps 3-4 twice."""
    write_log(tmp_path / "metrics.jsonl", [0, 1, 2, 3, 4, 3, 4, 5])
    with pytest.warns(UserWarning, match="2 line"):
        records = read_metrics(tmp_path)
    assert [(r["step"], r["x"]) for r in records] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 5.0),
        (4, 6.0),
        (5, 7.0),
    ]


def test_plot_and_compare_read_one_copy_per_step(tmp_path):
    from spear_rl.experiments.compare import eval_curve
    from spear_rl.train.plot import series

    (tmp_path / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "eval/success_rate": v}) + "\n"
            for s, v in [(0, 0.1), (2, 0.2), (4, 0.9), (2, 0.3), (4, 0.4)]
        )
    )
    with pytest.warns(UserWarning):
        records = read_metrics(tmp_path)
    assert eval_curve(records) == ([0, 2, 4], [0.1, 0.3, 0.4])
    assert series(records, "eval/success_rate") == ([0, 2, 4], [0.1, 0.3, 0.4])


def test_a_step_without_update_says_so_instead_of_entropy_nan():
    assert update_summary({"actor/entropy": 1.234, "actor/optimizer_steps": 2.0}) == "entropy 1.23"
    no_update = {"batch/train_samples": 0.0, "actor/optimizer_steps": 0.0}
    assert update_summary(no_update) == "no update (filters left nothing to train)"
    replay_only = {"actor/optimizer_steps": 1.0, "replay/replayed": 12.0}
    assert update_summary(replay_only) == "replay-only update"
    # every sample filtered (kept with a zero mask since issue 29) and nothing replayed: no update,
    # although the optimiser was called on the masked mini-batch
    all_masked = {"actor/optimizer_steps": 1.0, "replay/replayed": 0.0}
    assert update_summary(all_masked) == "no update (filters left nothing to train)"
