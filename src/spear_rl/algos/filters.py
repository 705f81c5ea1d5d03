"""Dr.BoT response filters and the low-variance group filter (spec §3.5, §3.6).

A filtered sample keeps its reward in the group statistics; the trainer only zeroes its loss mask.
The four response filters, each its own switch:
- overlong: the response hit its token limit;
- incomplete: no parseable action / final answer (a "void turn"); a parseable action the env
  rejects is not void: it keeps its loss, so the invalid-turn penalty can push it down;
- repetitive: some `repeat_ngram`-token n-gram occurs at least `repeat_count` times;
- unreadable: the decoded text holds U+FFFD, lone surrogates or mojibake (UTF-8 read as latin-1/cp1252).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from spear_rl.fields import Settings, setting

FILTER_NAMES = ("overlong", "incomplete", "repetitive", "unreadable")
GROUP_FILTER_MODES = ("std", "std_rev")


@dataclass
class FilterConfig(Settings):
    """Dr.BoT's response filters and group-std filter: the `algo` section's filter keys (spec §3)."""

    section = "algo"

    filter_overlong: bool = setting(True, "drop responses that hit the token limit")
    filter_incomplete: bool = setting(True, "drop void turns (no parseable action / answer)")
    filter_repetitive: bool = setting(
        True, "drop responses where a filter_repeat_ngram-gram repeats filter_repeat_count times"
    )
    filter_unreadable: bool = setting(True, "drop responses with U+FFFD or mojibake")
    filter_repeat_ngram: int = setting(20, "n-gram length of the repetitive filter", ge=1)
    filter_repeat_count: int = setting(10, "repeats that make a response repetitive", ge=1)
    filter_keep_negative: bool = setting(
        False,
        "a filtered sample with a negative advantage still trains (filters withhold credit, not "
        "blame), so the invalid-format penalty reaches void replies; off in the spec",
    )
    group_filter_ratio: float = setting(
        0.75, "share of groups kept by the group-std filter; 1.0 keeps every group", gt=0, le=1
    )
    group_filter_mode: str = setting(
        "std",
        "keep the groups with the largest (std) or smallest (std_rev) reward std",
        choices=GROUP_FILTER_MODES,
    )


# ---- repetitive -------------------------------------------------------------------------------


def is_repetitive(token_ids: Sequence[int], ngram: int = 20, count: int = 10) -> bool:
    """True when some `ngram`-token window occurs `count` or more times (overlaps count).

    One pass with a hash table of n-gram tuples: exact (no hash collisions can fire it) and linear in
    the length (about 0.2 s for 100k tokens on one slow core).
    """
    if ngram < 1 or count < 1:
        raise ValueError(f"ngram and count must be >= 1, got ngram={ngram}, count={count}")
    # Tensors and arrays: compare plain ints (a 0-d tensor hashes by identity, not value).
    ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
    windows = len(ids) - ngram + 1
    if windows < count:
        return False
    seen: Counter[tuple[int, ...]] = Counter()
    for start in range(windows):
        key = tuple(ids[start : start + ngram])
        seen[key] += 1
        if seen[key] >= count:
            return True
    return False


# ---- unreadable -------------------------------------------------------------------------------

# A UTF-8 continuation byte (0x80-0xBF) shows up as U+0080-U+00BF when read as latin-1, and as these
# characters when read as cp1252 (bytes 0x80-0x9F). Map every such character back to its byte.
_CONTINUATION_BYTES: dict[str, int] = {chr(b): b for b in range(0x80, 0xC0)}
for _byte in range(0x80, 0xA0):
    _char = bytes([_byte]).decode("cp1252", errors="ignore")
    if _char:
        _CONTINUATION_BYTES[_char] = _byte
_CONT = "[" + "".join(re.escape(c) for c in _CONTINUATION_BYTES) + "]"
# A latin-1 lead byte of a 2-, 3- or 4-byte UTF-8 sequence followed by its continuation bytes.
_MOJIBAKE_CANDIDATE = re.compile(
    f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{{2}}|[\u00f0-\u00f4]{_CONT}{{3}}"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_utf8_misread(chars: str) -> bool:
    """Do these characters, turned back into bytes, decode as UTF-8 to real, assigned characters?"""
    raw = bytes(_CONTINUATION_BYTES.get(c, ord(c)) for c in chars)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:  # overlong forms, surrogates, > U+10FFFF: not a misread
        return False
    # Unassigned or control results ("×½" -> U+05FD) are coincidences in legitimate text.
    return all(unicodedata.category(c) not in ("Cn", "Cc", "Cs") for c in decoded)


def is_unreadable(text: str) -> bool:
    """U+FFFD, a lone surrogate, or mojibake such as "Ã©" (é) and "â€™" (’).

    Plain ASCII and ordinary unicode (accents, CJK, emoji) are readable: their characters are either
    outside latin-1 or do not form a UTF-8 byte pattern when read back as latin-1/cp1252.
    """
    if "\ufffd" in text or _SURROGATE.search(text):
        return True
    return any(_is_utf8_misread(m.group()) for m in _MOJIBAKE_CANDIDATE.finditer(text))


# ---- applying the response filters ------------------------------------------------------------


def response_filter_reasons(
    *, truncated: bool, parsed: bool, token_ids: Sequence[int], text: str, cfg: FilterConfig
) -> list[str]:
    """Names of the switched-on filters that fire for one response, in `FILTER_NAMES` order."""
    reasons = []
    if cfg.filter_overlong and truncated:
        reasons.append("overlong")
    if cfg.filter_incomplete and not parsed:
        reasons.append("incomplete")
    if cfg.filter_repetitive and is_repetitive(
        token_ids, cfg.filter_repeat_ngram, cfg.filter_repeat_count
    ):
        reasons.append("repetitive")
    if cfg.filter_unreadable and is_unreadable(text):
        reasons.append("unreadable")
    return reasons


def apply_response_filters(
    items: Sequence[tuple[bool, bool, Sequence[int], str]], cfg: FilterConfig
) -> tuple[list[bool], dict[str, int]]:
    """Keep flags for (truncated, parsed, token_ids, text) items and how often each filter fired.

    The counts hold every name in `FILTER_NAMES` (0 when switched off) so logged metrics keep the
    same keys; a sample caught by two filters counts once for each.
    """
    keep: list[bool] = []
    counts = dict.fromkeys(FILTER_NAMES, 0)
    for truncated, parsed, token_ids, text in items:
        reasons = response_filter_reasons(
            truncated=truncated, parsed=parsed, token_ids=token_ids, text=text, cfg=cfg
        )
        for name in reasons:
            counts[name] += 1
        keep.append(not reasons)
    return keep, counts


# ---- group filter -----------------------------------------------------------------------------


def select_groups(
    group_ids: Sequence[int], group_stds: Sequence[float], ratio: float, mode: str = "std"
) -> list[int]:
    """Keep the floor(ratio * G) groups with the largest reward std (`std`) or smallest (`std_rev`).

    At least one group is kept when there is one; ties go to the group listed first; ratio >= 1 keeps
    all. A NaN std (a group of one has no spread) counts as 0. Returns kept ids in input order.
    """
    if mode not in GROUP_FILTER_MODES:
        raise ValueError(
            f"unknown group filter mode {mode!r}; choose one of: {', '.join(GROUP_FILTER_MODES)}"
        )
    if not ratio > 0:
        raise ValueError(f"group filter ratio must be > 0 (1.0 keeps every group), got {ratio}")
    if len(group_ids) != len(group_stds):
        raise ValueError(f"{len(group_ids)} group ids but {len(group_stds)} group stds")
    if len(set(group_ids)) != len(group_ids):
        raise ValueError("group ids must be unique")
    num_groups = len(group_ids)
    if ratio >= 1 or num_groups == 0:
        return list(group_ids)
    # The epsilon keeps 0.29 * 100 = 28.999... at 29.
    num_keep = max(1, math.floor(ratio * num_groups + 1e-9))
    stds = [0.0 if math.isnan(s) else float(s) for s in group_stds]
    sign = -1.0 if mode == "std" else 1.0
    ranked = sorted(range(num_groups), key=lambda i: (sign * stds[i], i))
    kept = sorted(ranked[:num_keep])
    return [group_ids[i] for i in kept]
