"""A training run with its envs in worker processes: the same run as inline, env metrics logged,
no worker left once train() returns."""

import multiprocessing

import pytest
import torch
from test_trainer import tiny_config

from spear_rl.train.config import ConfigError
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train

ONE_STEP = {"train": {"steps": 1, "eval_every": 0}}


def test_process_workers_train_the_same_run_as_inline(tmp_path):
    torch.set_num_threads(1)
    runs = {}
    for workers in ("inline", "process"):
        env = {"env": {"workers": workers, "num_workers": 2}}
        cfg = tiny_config(tmp_path, workers, **ONE_STEP, **env)
        result = train(cfg, echo=lambda *_: None)
        runs[workers] = read_metrics(result.run_dir)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("spear-env")]
    inline, process = (runs[w][-1] for w in ("inline", "process"))
    assert process["env/worker_failures"] == 0.0 and process["env/workers_replaced"] == 0.0
    same = [
        k
        for k in inline
        if k.startswith(("rollout/", "reward/", "eval/", "actor/")) and "seconds" not in k
    ]
    assert len(same) > 10
    assert {k: process[k] for k in same} == {k: inline[k] for k in same}


def test_unknown_env_workers_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="env.workers.*inline, process, ray"):
        tiny_config(tmp_path, "bad", env={"workers": "threads"})
