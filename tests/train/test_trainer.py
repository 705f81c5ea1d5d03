"""The trainer on its real call path: a tiny policy, real Sokoban rollouts, real updates."""

import math

import pytest

from spear_rl.cli import main
from spear_rl.experiments.compare import compare
from spear_rl.train.config import load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

TINY = {
    "model": {"tiny_layers": 1, "tiny_hidden": 64, "tiny_heads": 2, "tiny_vocab": 512},
    "rollout": {"group_size": 4, "max_turns": 3},
    "sft": {"episodes": 8, "epochs": 1},
    "train": {
        "steps": 2,
        "batch_tasks": 2,
        "eval_every": 1,
        "eval_episodes": 4,
        "checkpoint_every": 1,
        "threads": 1,
    },
    "replay": {"warmup_steps": 1, "tolerate_steps": 3},
    # a policy warmed up for seconds writes mostly invalid turns; with the Dr.BoT filters on they
    # would all be dropped and no update would run, so these short runs train on everything
    "algo": {
        "filter_incomplete": False,
        "filter_overlong": False,
        "filter_unreadable": False,
        "group_filter_ratio": 1.0,
    },
    "log": {"progress": False, "sample_trajectories": 2},
}


def tiny_config(tmp_path, name, recipe="sokoban/spear", **extra):
    from spear_rl.train.config import deep_merge

    over = deep_merge(TINY, {"train": {"output_dir": str(tmp_path), "run_name": name}})
    return load_config(recipe, deep_merge(over, extra))


# Every metric DESIGN.md promises ("Observable training"), by its logged name.
EXPECTED_EVERY_STEP = [
    "reward/mean",
    "rollout/success_rate",
    "actor/entropy",
    "actor/clip_frac_low",
    "actor/clip_frac_high",
    "actor/approx_kl",
    "rollout/response_len_mean",
    "rollout/tool_call_rate",
    "filter/overlong",
    "filter/incomplete",
    "filter/repetitive",
    "filter/unreadable",
    "group_filter/kept_frac",
    "replay/size",
    "replay/mean_age",
    "replay/admitted",
    "replay/replayed",
    "coef/toolcall_weight",
    "coef/replay",
    "time/generate",
    "time/env",
    "env/worker_failures",
    "time/update",
    "time/update_replay",
    "eval/success_rate",
]


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    result = train(tiny_config(tmp, "two"), echo=lambda *_: None)
    return result


def test_every_logged_metric_is_present_and_finite(two_step_run):
    records = [r for r in read_metrics(two_step_run.run_dir) if r["step"] > 0]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        missing = [k for k in EXPECTED_EVERY_STEP if k not in record]
        assert not missing, f"step {record['step']} lacks {missing}"
        bad = {
            k: v
            for k, v in record.items()
            if not isinstance(v, int | float) or not math.isfinite(v)
        }
        assert not bad, f"non-finite metrics: {bad}"
    assert (two_step_run.run_dir / "config.yaml").is_file()
    assert (two_step_run.run_dir / "samples" / "eval_step_000002.md").is_file()
    assert 0.0 <= two_step_run.success_after <= 1.0


def test_checkpoint_loads_with_plain_transformers(two_step_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = two_step_run.run_dir / "checkpoints" / "step_000002" / "model"
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    ids = tok("hello", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] >= len(tok) - 1


def test_plot_writes_a_png(two_step_run, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["plot", str(two_step_run.run_dir), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


BF16 = {"rollout": {"precision": "bfloat16"}, "train": {"precision": "bfloat16"}}


@pytest.mark.parametrize(
    ("model", "arithmetic"),
    [({}, {}), ({"lora_rank": 4}, {}), ({"lora_rank": 4}, BF16)],
    ids=["full", "lora", "lora-bf16"],
)
def test_resume_continues_the_same_run(tmp_path, model, arithmetic):
    """4 steps in one go == 2 steps, then --resume for 2 more (same metrics, fixed seeds, CPU).
    A LoRA run resumes from its saved adapters on the rebuilt base. In bf16 the hf engine's own
    copy (merged LoRA) is rebuilt from the checkpoint, and pi_old is recomputed."""
    from spear_rl.train.config import deep_merge

    def config(name, steps):
        extra = deep_merge(arithmetic, {"train": {"steps": steps}, "model": model})
        return tiny_config(tmp_path, name, **extra)

    straight = train(config("straight", 4), echo=lambda *_: None)
    first = train(config("split", 2), echo=lambda *_: None)
    resumed = train(
        resume=first.run_dir, resume_overrides={"train": {"steps": 4}}, echo=lambda *_: None
    )
    a = {r["step"]: r for r in read_metrics(straight.run_dir)}
    b = {r["step"]: r for r in read_metrics(resumed.run_dir)}
    assert sorted(a) == sorted(b) == [0, 1, 2, 3, 4]
    for step in a:
        for key, value in a[step].items():
            if (
                key.startswith(("time", "eval/seconds", "sft/seconds", "sft/tokens_per_s"))
                or key == "time"
            ):
                continue
            assert b[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
    if arithmetic:  # the bf16 path did run: a weight push and a recomputed pi_old every step
        assert all(a[s]["engine/sync_logprob_gap"] < 0.1 for s in range(1, 5))
        assert all(0 < a[s]["engine/old_logprob_gap_mean"] < 0.1 for s in range(1, 5))
    if model:  # the merged LoRA policy loads with plain transformers, like any checkpoint
        from transformers import AutoModelForCausalLM

        from spear_rl.train.checkpoint import latest_checkpoint

        merged = AutoModelForCausalLM.from_pretrained(latest_checkpoint(first.run_dir) / "model")
        assert not any("lora" in name for name, _ in merged.named_parameters())


def test_a_run_says_what_auto_precision_became(tmp_path):
    import torch

    from spear_rl.train.precision import resolve_precision

    lines: list[str] = []
    auto = {"rollout": {"precision": "auto"}, "train": {"precision": "auto", "steps": 1}}
    train(tiny_config(tmp_path, "auto", **auto), echo=lines.append)
    here = resolve_precision("auto", torch.device("cpu"))
    said = [line for line in lines if line.startswith("RL arithmetic")]
    assert said == [f"RL arithmetic: sampling in {here}, the update in {here}"]
    lines.clear()
    train(tiny_config(tmp_path, "fp32", train={"steps": 1}), echo=lines.append)
    assert not any(line.startswith("RL arithmetic") for line in lines)


def test_cli_bad_config_names_the_key(capsys):
    assert main(["train", "--algo.los=vanilla"]) == 2
    err = capsys.readouterr().err
    assert "algo.los" in err and "algo.loss" in err and "Traceback" not in err
    assert main(["train", "--recipe", "sokoban/nope"]) == 2
    assert "not found" in capsys.readouterr().err


# ---- the frozen control (`spear compare --presets ...,frozen`) ----------------------------------
EVAL_KEYS = ("eval/success_rate", "eval/episode_reward", "eval/turns", "eval/invalid_rate")


def eval_rows(run_dir) -> dict[int, tuple[float, ...]]:
    return {
        r["step"]: tuple(r[k] for k in EVAL_KEYS)
        for r in read_metrics(run_dir)
        if "eval/success_rate" in r
    }


def test_frozen_control_matches_a_run_that_cannot_move(tmp_path):
    """A run at lr 0 never changes its policy, so the frozen control, which evaluates the same warm
    start at the same steps with the same sampling seeds, must log exactly its evaluations."""
    over = {**TINY, "train": {**TINY["train"], "steps": 3, "eval_every": 2, "lr": 0.0}}
    report = compare("sokoban", ["spear", "frozen"], [0], tmp_path, over, echo=lambda *_: None)

    trained = eval_rows(tmp_path / "spear-seed0")
    frozen = eval_rows(tmp_path / "frozen-seed0")
    assert sorted(frozen) == [0, 2, 3]  # step 0, every eval_every, and the last step
    assert frozen == trained
    # the same episodes, reply for reply (a policy warmed up for seconds fails them all, so the
    # rendered replies are what tells one evaluation from another) ...
    replies = {
        name: {
            step: (tmp_path / name / "samples" / f"eval_step_{step:06d}.md").read_text()
            for step in frozen
        }
        for name in ("spear-seed0", "frozen-seed0")
    }
    assert replies["frozen-seed0"] == replies["spear-seed0"]
    # ... and each step's evaluation samples with its own seed: that is the noise a curve shows
    assert len(set(replies["frozen-seed0"].values())) == len(frozen)
    assert report["table"]["frozen"]["final_success"][0] == frozen[3][0]
    # the control writes only evaluations: no training metrics
    assert not any("rollout/success_rate" in r for r in read_metrics(tmp_path / "frozen-seed0"))


def test_baseline_history_records_only_the_groups_the_filter_kept(tmp_path):
    """Spec §6 step 2 (replay.baseline_groups=kept, the reference): the group-std filter's dropped
    groups never enter the P50 baseline."""
    cfg = tiny_config(
        tmp_path,
        "kept",
        train={"steps": 1, "batch_tasks": 4, "eval_episodes": 2, "checkpoint_every": 0},
        algo={"group_filter_ratio": 0.5},
    )
    assert cfg.replay.baseline_groups == "kept"
    result = train(cfg, echo=lambda *_: None)
    (record,) = [r for r in read_metrics(result.run_dir) if r["step"] == 1]
    assert record["group_filter/kept_frac"] == 0.5
    assert record["replay/history_len"] == 2.0  # 2 of the 4 groups
