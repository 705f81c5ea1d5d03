"""The tiny model's tokenizer: a byte-level BPE trained in well under a second on env text.

It is wrapped as a `PreTrainedTokenizerFast` with ChatML special tokens and a ChatML chat template,
so the rollout renders prompts for it with the same `apply_chat_template` call it uses for real
models (Qwen2.5, SmolLM2). Byte-level means every string, including invalid model output, encodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of a chat turn; the tiny model's eos
END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, PAD]

# The ChatML template (what Qwen2.5 and SmolLM2 use, minus their default system prompts).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# BPE merges only inside a word (an optional space, a letter, lowercase letters) and joins a digit
# to the space before it; every other character (other digits, punctuation, capitals standing
# alone, newlines) stays its own pre-token. Grids such as Sokoban rooms and numbers therefore keep
# one character per token, so a tiny model sees their 2-D / positional structure instead of
# memorising whole rows as opaque symbols. " 2" being one token makes "plate 2" two tokens, so
# copying the number that follows a name in the prompt is one look-up (an induction step): with
# " ", "2" apart, every number follows the same " " token and the copy needs two.
WORD_PATTERN = r" ?[A-Za-z][a-z]+| ?[0-9]|[\s\S]"
# Bumped whenever the tokenizer a corpus trains changes, so cached warm starts are not reused.
TOKENIZER_VERSION = 3
# Whole terms (see `build_tiny_tokenizer`) beyond this many are an env bug, not a vocabulary.
MAX_WHOLE_TERMS = 50_000

# Caps keep training well under a second however large the env corpus is.
MAX_CORPUS_TEXTS = 20_000
MAX_CORPUS_CHARS = 2_000_000

# Always part of the corpus, so the chat scaffolding and the action format get merged tokens even
# when the caller's corpus is small.
_BASE_CORPUS = [
    "system\n",
    "user\n",
    "assistant\n",
    "tool\n",
    "<think></think><action></action>",
    "<think>",
    "</think>",
    "<action>",
    "</action>",
]


def build_tiny_tokenizer(
    corpus: Iterable[str], vocab_size: int, whole_terms: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens (special tokens included) on `corpus`.

    Deterministic for a given corpus. The first MAX_CORPUS_TEXTS texts / MAX_CORPUS_CHARS chars are
    used. `eos` is `<|im_end|>` (generation stops at the end of the assistant turn), `pad` is
    `<|pad|>`. Each of `whole_terms` (an env's ids, e.g. WebShop's "B08BPC9HKM") becomes one extra
    token wherever it occurs: the BPE would split it into ten characters, and a two-layer model
    copies one token from its context far more easily than ten in a row.
    """
    terms = sorted({t for t in whole_terms if isinstance(t, str) and t.strip()})
    if len(terms) > MAX_WHOLE_TERMS:
        raise ValueError(
            f"{len(terms)} whole terms for the tiny tokenizer; at most {MAX_WHOLE_TERMS} are allowed"
        )
    minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < minimum:
        raise ValueError(f"tiny tokenizer vocab_size must be at least {minimum}, got {vocab_size}")
    texts = _BASE_CORPUS * 8  # frequent enough that role names and tags become single tokens
    chars = 0
    for text in itertools.islice(corpus, MAX_CORPUS_TEXTS):
        if not isinstance(text, str) or not text:
            continue
        texts.append(text)
        chars += len(text)
        if chars >= MAX_CORPUS_CHARS:
            break

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[END_OF_TEXT, IM_START],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    if terms:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in terms])
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a generated turn: the tokenizer's eos plus ChatML's end-of-turn if known."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    end_of_turn = tokenizer.convert_tokens_to_ids(IM_END)
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(end_of_turn, int) and end_of_turn != unk and end_of_turn not in ids:
        ids.append(end_of_turn)
    if not ids:
        raise ValueError(
            "the tokenizer has no eos token and no <|im_end|>; set tokenizer.eos_token"
        )
    return ids


def end_of_turn_id(tokenizer) -> int:
    """The id appended to expert responses and used to close a truncated turn: the first stop id."""
    return stop_token_ids(tokenizer)[0]


def pad_token_id(tokenizer) -> int:
    """The pad id (real models without one pad with eos; attention masks make the choice moot)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return end_of_turn_id(tokenizer)


def safe_decode(tokenizer, token_ids: list[int]) -> str:
    """Decode model output for the env. Never raises: bad bytes become U+FFFD, bad ids are dropped."""
    try:
        return tokenizer.decode(token_ids, skip_special_tokens=True)
    except Exception:  # untrusted ids (out of range, wrong type): keep what decodes
        vocab = len(tokenizer)
        kept = [int(t) for t in token_ids if isinstance(t, int) and 0 <= t < vocab]
        try:
            return tokenizer.decode(kept, skip_special_tokens=True) + "\ufffd"
        except Exception:
            return "\ufffd"
