"""Parsing model responses into actions. Model text is untrusted: every failure is a value, never an exception.

Every parser here does work linear in the reply's length (one left-to-right scan for tags, no regex
that restarts a lazy search from each opening tag), and replies longer than MAX_PARSE_CHARS are not
searched at all.
"""

from __future__ import annotations

import re

# Responses longer than this are not searched (a 100k-character response is an invalid turn, not a stall).
MAX_PARSE_CHARS = 20_000
MAX_ACTION_CHARS = 200
# Both tags in one pass; "<action>" and "</action>" cannot overlap, so each character is read once.
_ACTION_TAG_RE = re.compile(r"<(/?)action>", re.IGNORECASE)


def tagged_blocks(text: str, limit: int) -> list[str]:
    """Contents of `<action>...</action>` blocks, at most `limit` of them, in one linear scan.

    Same blocks as `re.findall(r"<action>(.*?)</action>", text, re.S | re.I)`: a block runs from an
    opening tag to the first closing tag after it (openings in between belong to its content).
    """
    blocks: list[str] = []
    opened_at: int | None = None
    for tag in _ACTION_TAG_RE.finditer(text):
        if tag.group(1) == "":  # an opening tag
            if opened_at is None:
                opened_at = tag.end()
        elif opened_at is not None:
            blocks.append(text[opened_at : tag.start()])
            opened_at = None
            if len(blocks) >= limit:
                break
    return blocks


def parse_tagged_action(text: str) -> str | None:
    """The action in `<think>...</think><action>...</action>`, or None when the format is broken.

    Valid means: exactly one `<action>` block, non-empty after stripping, at most MAX_ACTION_CHARS,
    printable text (no replacement characters or control characters).
    """
    if not isinstance(text, str) or len(text) > MAX_PARSE_CHARS:
        return None
    found = tagged_blocks(text, limit=2)  # a second block already makes the reply invalid
    if len(found) != 1:
        return None
    action = " ".join(found[0].split())
    if not action or len(action) > MAX_ACTION_CHARS or "\ufffd" in action:
        return None
    if any(not ch.isprintable() for ch in action):
        return None
    return action
