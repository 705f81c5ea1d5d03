"""Your own model: a local HF causal LM's own chat template is used for prompts; one without a
template is a one-line error, or runs with the explicit `model.chat_template` fallback."""

from __future__ import annotations

import json

import pytest

from spear_rl.models import ModelConfig, ModelLoadError, load_policy
from spear_rl.rollout.prompts import build_turn_prompt, env_message_ids

CORPUS = ["You are at cell 3 of 6. Reach the exit at cell 0.", "<action>left</action>"] * 10


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A local model folder (tiny Qwen2 + tokenizer) whose tokenizer has no chat template."""
    model, tokenizer = load_policy(
        ModelConfig(tiny_layers=1, tiny_hidden=32, tiny_heads=2, tiny_vocab=300),
        corpus=lambda: CORPUS,
    )
    folder = tmp_path_factory.mktemp("no_template")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    for extra in folder.glob("chat_template.*"):
        extra.unlink()
    return folder


def test_a_jinja_file_replaces_the_template_and_prompts_use_it(saved_model, tmp_path):
    own = tmp_path / "own.jinja"
    own.write_text(
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    _, tokenizer = load_policy(ModelConfig(name_or_path=str(saved_model), chat_template=str(own)))
    text = tokenizer.decode(build_turn_prompt(tokenizer, "SYS", "T", [], "O", None))
    assert (
        text == "[system]SYS<|im_end|>[user]Task: T\nCurrent observation:\nO<|im_end|>[assistant]"
    )


def test_no_template_is_a_one_line_error_that_names_the_option(saved_model):
    with pytest.raises(ModelLoadError) as err:
        load_policy(ModelConfig(name_or_path=str(saved_model)))
    assert "has no chat template" in str(err.value) and "model.chat_template=plain" in str(
        err.value
    )
    with pytest.raises(ModelLoadError, match="neither 'plain' nor a Jinja template file"):
        load_policy(ModelConfig(name_or_path=str(saved_model), chat_template="chatml"))


def test_the_plain_fallback_ends_turns_with_eos_and_extends_whole_conversations(saved_model):
    _, tokenizer = load_policy(ModelConfig(name_or_path=str(saved_model), chat_template="plain"))
    eos = tokenizer.eos_token
    text = tokenizer.decode(build_turn_prompt(tokenizer, "SYS", "T", [], "O", None))
    assert text == f"system: SYS{eos}\nuser: Task: T\nCurrent observation:\nO{eos}\nassistant: "
    tool_turn = tokenizer.decode(env_message_ids(tokenizer, "tool", "42"))
    assert tool_turn == f"\ntool: 42{eos}\nassistant: "
