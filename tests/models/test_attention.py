"""The copy-free grouped-query attention computes what transformers' `sdpa` computes."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from spear_rl.models import token_logprobs
from spear_rl.models.attention import NAME, use_grouped_sdpa
from spear_rl.models.config import ModelConfig
from spear_rl.models.loading import load_policy
from spear_rl.rollout.generation import generate


def _gqa_model(attn: str = "sdpa") -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,  # groups of 3 query heads, as SmolLM2's 9 over 3
        max_position_embeddings=128,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(1, 64, (4, 20))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0  # left padding
    mask[1, 15:] = 0  # right padding
    mask[2, :3] = 0
    return ids, mask


def _pair():
    plain, grouped = _gqa_model(), _gqa_model()
    assert use_grouped_sdpa(grouped)
    assert grouped.config._attn_implementation == NAME
    return plain, grouped


def test_same_logits_bit_for_bit_on_padded_rows():
    # transformers gives a custom attention no mask unless one is registered for it: the padded
    # rows then attend to their pads, which this catches
    plain, grouped = _pair()
    ids, mask = _padded_batch()
    with torch.no_grad():
        want = plain(input_ids=ids, attention_mask=mask).logits
        got = grouped(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert torch.equal(got[real], want[real])


def test_same_generation_bit_for_bit():
    plain, grouped = _pair()
    prompts = [[5, 6, 7, 8, 9], [5, 6, 7], [5, 6, 7, 8, 9], [11, 12, 13, 14, 15, 16, 17]]
    outs = []
    for model in (plain, grouped):
        outs.append(
            generate(
                model,
                prompts,
                12,
                eos_token_ids=[3],
                pad_token_id=0,
                generator=torch.Generator().manual_seed(0),
                keep_kv=True,
                merge_duplicates=True,
            )
        )
    for want, got in zip(*outs, strict=True):
        assert got.token_ids == want.token_ids
        assert got.logprobs == want.logprobs
        for (wk, wv), (gk, gv) in zip(want.kv.layers, got.kv.layers, strict=True):
            assert torch.equal(gk, wk) and torch.equal(gv, wv)


def test_same_training_gradients():
    plain, grouped = _pair()
    ids, mask = _padded_batch()
    grads = []
    for model in (plain, grouped):
        model.train()
        model.zero_grad()
        logp, _ = token_logprobs(model, ids, mask)
        (logp * mask).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    # keys and values sum their query heads' gradients in another order: equal to rounding
    assert torch.allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_saved_model_names_plain_sdpa(tmp_path):
    _, grouped = _pair()
    grouped.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()
    assert "spear" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config._attn_implementation == "sdpa"


def test_other_attention_is_left_alone():
    model = _gqa_model("eager")
    assert not use_grouped_sdpa(model)
    assert model.config._attn_implementation == "eager"


def test_load_policy_switches_the_policy():
    model, _ = load_policy(ModelConfig(name_or_path="tiny"))
    assert model.config._attn_implementation == NAME
