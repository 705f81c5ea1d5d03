"""What an engine is given: the policy's weights in checkpoint format (LoRA merged without touching
the training weights) and, for vLLM's CPU kernels, an exactly equivalent wider-headed model."""

from __future__ import annotations

import copy

import pytest
import torch
from spear_toy_env import tiny_policy
from transformers import LlamaConfig, LlamaForCausalLM

from spear_rl.models import ModelConfig
from spear_rl.models.loading import _wrap_lora
from spear_rl.rollout.engines.head_padding import (
    head_size,
    pad_heads,
    padded_config_dict,
    padded_head_size,
)
from spear_rl.rollout.engines.weights import policy_state_dict


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_padded_heads_give_the_same_logits(policy):
    model, _ = policy
    model.eval()
    old = head_size(model.config)
    assert old == 16  # the tiny default: 8 heads of 16, which vLLM's CPU kernels lack
    new = padded_head_size(old, [32, 64, 80, 96])
    assert new == 32
    config = LlamaConfig(**padded_config_dict(model.config, new))
    wide = LlamaForCausalLM(config).eval()
    state = pad_heads(policy_state_dict(model), old, new, with_o_bias=config.attention_bias)
    missing, unexpected = wide.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embeddings
    ids = torch.randint(
        0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0)
    )
    reference, served = _logits(model, ids), _logits(wide, ids)
    assert (reference - served).abs().max().item() < 1e-4
    # the rewrite is not the identity: the wider q/k/v have zero rows and q is rescaled
    q = "model.layers.0.self_attn.q_proj.weight"
    assert state[q].shape[0] == 2 * policy_state_dict(model)[q].shape[0]


def test_head_sizes_without_a_whole_multiple_are_refused():
    assert padded_head_size(16, [32, 64]) == 32
    assert padded_head_size(24, [32, 64, 80]) is None
    with pytest.raises(ValueError, match="cannot pad"):
        pad_heads({}, 16, 40, with_o_bias=False)


def test_lora_policy_is_merged_without_touching_its_weights(policy):
    base, _ = policy
    lora = _wrap_lora(copy.deepcopy(base), ModelConfig(lora_rank=4), seed=0)
    with torch.no_grad():  # lora_B starts at zero: give the adapters a real effect
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    merged = policy_state_dict(lora)
    assert set(merged) == set(base.state_dict())  # plain checkpoint names, no adapters
    reference = copy.deepcopy(lora).merge_and_unload().state_dict()
    for name, tensor in merged.items():
        assert torch.allclose(tensor, reference[name], atol=1e-6), name
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[q], base.state_dict()[q])  # the adapters did change it
    for name, param in lora.named_parameters():
        assert torch.equal(param, before[name]), name  # bit for bit: no merge/unmerge drift
