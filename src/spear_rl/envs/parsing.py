"""Parsing model responses into actions. Model text is untrusted: every failure is a value, never an exception."""

from __future__ import annotations

import re

# Responses longer than this are not searched (a 100k-character response is an invalid turn, not a stall).
MAX_PARSE_CHARS = 20_000
_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
MAX_ACTION_CHARS = 200


def parse_tagged_action(text: str) -> str | None:
    """The action in `<think>...</think><action>...</action>`, or None when the format is broken.

    Valid means: exactly one `<action>` block, non-empty after stripping, at most MAX_ACTION_CHARS,
    printable text (no replacement characters or control characters).
    """
    if not isinstance(text, str) or len(text) > MAX_PARSE_CHARS:
        return None
    found = _ACTION_RE.findall(text)
    if len(found) != 1:
        return None
    action = " ".join(found[0].split())
    if not action or len(action) > MAX_ACTION_CHARS or "\ufffd" in action:
        return None
    if any(not ch.isprintable() for ch in action):
        return None
    return action
