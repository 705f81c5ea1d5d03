"""The tiny byte-level BPE tokenizer: round trips, chat template, special tokens."""

from __future__ import annotations

import pytest

from spear_rl.models.tokenizer import (
    build_tiny_tokenizer,
    end_of_turn_id,
    pad_token_id,
    safe_decode,
    stop_token_ids,
)

CORPUS = [
    "You are at cell 3 of 6. Reach the exit at cell 0.",
    "######\n#_X_O#\n#_P__#\n######",
    "<think>the box is left</think><action>left</action>",
    "Admissible actions: up, down, left, right",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(CORPUS, vocab_size=400)


@pytest.mark.parametrize(
    "text",
    [
        "You are at cell 3 of 6. Reach the exit at cell 0.",
        "######\n#_X_O#\n#_P__#\n######",
        "<think></think><action>up</action>",
        "unseen wörds, ünïcödé ✓ and emoji 🙂\ttabs\r\n",
        "",
        "  leading and trailing spaces  ",
    ],
)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_grid_characters_stay_one_token_each(tokenizer):
    row = "#_XOP#"
    ids = tokenizer.encode(row, add_special_tokens=False)
    assert [tokenizer.decode([i]) for i in ids] == list(row)


def test_a_number_after_a_name_is_one_token_per_digit_with_its_space(tokenizer):
    # " cell", " 3": copying the number after a name is a single look-up (the corpus has " 3")
    pieces = [
        tokenizer.decode([i]) for i in tokenizer.encode("at cell 3", add_special_tokens=False)
    ]
    assert pieces[-2:] == [" cell", " 3"]
    assert [tokenizer.decode([i]) for i in tokenizer.encode(" 60", add_special_tokens=False)] == [
        " 6",
        "0",
    ]


def test_words_are_merged(tokenizer):
    # a frequent word is one token, so prompts stay short
    assert len(tokenizer.encode(" exit", add_special_tokens=False)) == 1


def test_special_tokens_and_eos(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id
    assert pad_token_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|pad|>")
    assert pad_token_id(tokenizer) != tokenizer.eos_token_id
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False) == [
        tokenizer.convert_tokens_to_ids("<|im_start|>")
    ]


def test_chat_template_renders_chatml(tokenizer):
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        "<|im_start|>assistant\nA<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, return_dict=False)
    assert tokenizer.decode(ids) == prompt


def test_training_is_deterministic():
    a = build_tiny_tokenizer(CORPUS, vocab_size=400)
    b = build_tiny_tokenizer(CORPUS, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()


def test_vocab_size_bounds():
    small = build_tiny_tokenizer(CORPUS * 5, vocab_size=300)
    assert len(small) <= 300
    with pytest.raises(ValueError, match="at least"):
        build_tiny_tokenizer(CORPUS, vocab_size=100)


def test_safe_decode_never_raises(tokenizer):
    euro = tokenizer.encode("\u20ac", add_special_tokens=False)  # 3 bytes in UTF-8
    assert "\ufffd" in safe_decode(tokenizer, euro[:1] * 2)  # a cut-off multi-byte char
    assert safe_decode(tokenizer, [tokenizer.eos_token_id]) == ""  # special tokens skipped
    assert "\ufffd" in safe_decode(tokenizer, [10**9, -5])  # out-of-range ids


def test_whole_terms_are_one_token_each_and_round_trip():
    terms = ["B08BPC9HKM", "b08bpc9hkm", "[SEP]"]
    tok = build_tiny_tokenizer(CORPUS, vocab_size=400, whole_terms=terms)
    plain = build_tiny_tokenizer(CORPUS, vocab_size=400)
    assert len(tok) == len(plain) + 3
    text = "Next > [SEP] B08BPC9HKM [SEP] a shirt\nclick[b08bpc9hkm]"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    pieces = [tok.decode([i]) for i in ids]
    assert pieces.count("[SEP]") == 2 and "B08BPC9HKM" in pieces and "b08bpc9hkm" in pieces
    # everything else tokenizes as without the terms
    assert tok.encode("a shirt", add_special_tokens=False) == plain.encode(
        "a shirt", add_special_tokens=False
    )


def test_too_many_whole_terms_is_a_clear_error(monkeypatch):
    import spear_rl.models.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "MAX_WHOLE_TERMS", 2)
    with pytest.raises(ValueError, match="whole terms"):
        build_tiny_tokenizer(CORPUS, vocab_size=400, whole_terms=["a1", "b2", "c3"])
