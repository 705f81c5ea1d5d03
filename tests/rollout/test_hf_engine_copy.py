"""rollout.precision=bfloat16: the hf engine samples from its own bf16 copy of the policy, which
the trainer pushes after each update and checks on a probe; float32 samples from the policy
itself. A LoRA policy's copy holds the merged weights."""

from __future__ import annotations

import copy

import pytest
import torch
from spear_toy_env import EndsEarly, tiny_policy

from spear_rl.models import ModelConfig, load_policy, token_logprobs
from spear_rl.rollout import RolloutConfig, run_rollout
from spear_rl.rollout.engines import EngineSettings, make_engine
from spear_rl.rollout.engines.base import EngineSyncError
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.engines.sync import sync_engine
from spear_rl.rollout.engines.weights import policy_state_dict
from spear_rl.train import precision

PROBE_TEXT = "Reach the exit at cell 0. You are at cell 4 of 6. left right"


def _settings(name: str) -> EngineSettings:
    return EngineSettings(64, 256, 0, 0.3, False, kv_reuse=True, precision=name)


def _gap(engine, model, ids) -> float:
    with torch.no_grad():
        want, _ = token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids)))
    got = torch.tensor(engine.score(ids))
    return float((got - want[0, 1:]).abs().mean())


@pytest.fixture
def policy():
    model, tokenizer = tiny_policy()
    return copy.deepcopy(model), tokenizer  # the tests change its weights


def test_bf16_engine_samples_from_its_own_copy_and_follows_pushes(policy):
    model, tokenizer = policy
    engine = make_engine("hf", model, tokenizer, _settings("bfloat16"))
    assert not engine.shares_weights and engine.dtype == torch.bfloat16
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the policy is untouched
    probe = tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
    assert 0 < _gap(engine, model, probe) < 0.1  # bf16 rounding only
    # a rollout through it records bf16 log-probs of what it sampled
    cfg = RolloutConfig(group_size=2, max_turns=2, max_response_tokens=6)
    result = run_rollout(model, tokenizer, EndsEarly, [0, 1], cfg, seed=0, engine=engine)
    assert result.samples and all(s.response_ids for s in result.samples)
    # the policy moves; the copy lags until the push, then agrees again
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    lagging = _gap(engine, model, probe)
    metrics = sync_engine(engine, model, probe)
    assert metrics["engine/sync_logprob_gap"] < min(0.1, lagging / 3)
    for name, tensor in policy_state_dict(model).items():
        torch.testing.assert_close(engine.model.state_dict()[name], tensor.to(torch.bfloat16))


def test_a_push_that_misses_or_invents_a_weight_fails(policy):
    model, tokenizer = policy
    engine = HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=False, dtype=torch.bfloat16)
    weights = list(policy_state_dict(model).items())
    with pytest.raises(EngineSyncError, match="left 1 weights behind"):
        engine.load_weights(weights[1:])
    with pytest.raises(EngineSyncError, match="no weight named 'model.ghost.weight'"):
        engine.load_weights([*weights, ("model.ghost.weight", weights[0][1])])


@pytest.mark.parametrize("native", [True, False])
def test_float32_and_auto_without_native_bf16_sample_from_the_policy_itself(
    policy, monkeypatch, native
):
    model, tokenizer = policy
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    auto = make_engine("hf", model, tokenizer, _settings("auto"))
    assert auto.shares_weights is not native
    plain = make_engine("hf", model, tokenizer, _settings("float32"))
    assert plain.shares_weights and plain.model is model and plain.dtype == torch.float32
    plain.load_weights([])  # nothing to push


def test_a_lora_policys_copy_holds_the_merged_weights():
    model, tokenizer = tiny_policy()
    lora, _ = load_policy(ModelConfig(tiny_layers=1, tiny_hidden=32, tiny_heads=2, lora_rank=4))
    with torch.no_grad():  # a nonzero adapter (B starts at 0), so merging matters
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    engine = HFEngine(lora, tokenizer.pad_token_id, 64, kv_reuse=False, dtype=torch.bfloat16)
    assert not any("lora" in name for name in engine.model.state_dict())
    ids = list(range(5, 25))
    assert _gap(engine, lora, ids) < 0.1
