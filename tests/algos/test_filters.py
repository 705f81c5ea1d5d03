"""Dr.BoT response filters and the group-std filter (spec §3.5, §3.6)."""

import numpy as np
import pytest

from spear_rl.algos.filters import (
    FilterConfig,
    apply_response_filters,
    is_repetitive,
    is_unreadable,
    response_filter_reasons,
    select_groups,
)

PHRASE = list(range(100, 120))  # 20 distinct tokens


# ---- repetitive -------------------------------------------------------------------------------


def test_a_20_gram_repeated_10_times_fires_and_9_times_does_not():
    prefix = [1, 2, 3]
    assert is_repetitive(prefix + PHRASE * 10 + [4])
    assert not is_repetitive(prefix + PHRASE * 9 + [4])


def test_overlapping_occurrences_count():
    # 29 equal tokens hold the same 20-gram at 10 overlapping offsets; 28 hold it 9 times.
    assert is_repetitive([7] * 29)
    assert not is_repetitive([7] * 28)


def test_custom_ngram_and_count_and_short_inputs():
    assert is_repetitive([1, 2, 1, 2, 1, 2], ngram=2, count=3)  # (1,2) x3
    assert not is_repetitive([1, 2, 1, 2, 1, 3], ngram=2, count=3)
    assert not is_repetitive([], ngram=20, count=10)
    assert not is_repetitive([5] * 19)
    assert is_repetitive([9], ngram=1, count=1)


def test_array_input_compares_values():
    assert is_repetitive(np.array([7] * 29, dtype=np.int64))
    assert not is_repetitive(np.arange(1000))


def test_long_response_is_handled():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 50_000, size=100_000).tolist()
    assert not is_repetitive(noise)
    assert is_repetitive(noise + PHRASE * 10)


def test_repetitive_rejects_meaningless_settings():
    with pytest.raises(ValueError, match="ngram and count"):
        is_repetitive([1, 2], ngram=0)
    with pytest.raises(ValueError, match="ngram and count"):
        is_repetitive([1, 2], count=0)


# ---- unreadable -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "caf\u00c3\u00a9 au lait",  # "café" as latin-1: Ã©
        "it\u00e2\u20ac\u2122s fine",  # "it’s" as cp1252: â€™
        "\u00c3\u00bcber",  # "über": Ã¼
        "\u00c3\u0089t\u00c3\u00a9",  # "Été" with a latin-1 C1 control: Ã\x89
        "smile \u00f0\u0178\u02dc\u20ac",  # "😀" as cp1252: ðŸ˜€
        "\u00c3\u00a0 bient\u00c3\u00b4t",  # "à bientôt": Ã<nbsp>
        "broken \ufffd byte",
        "lone surrogate \ud800 here",
    ],
)
def test_mojibake_and_replacement_characters_are_unreadable(text):
    assert is_unreadable(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ASCII <action>go north</action>",
        "café, naïve, Müller über Straße, São Paulo, ¿Qué?",
        "Ça va? À bientôt. Crème brûlée.",
        "日本語のテキスト 中文 한국어",
        "emoji 😀🚀 and symbols © ® ° ± µ",
        "3×½ = 1.5",  # Ã-like pairs that decode to an unassigned code point are not mojibake
        "\u00c3 then a space",
        "\u00e0\u20ac\u20ac",  # "à€€" reads back as E0 80 80, an overlong form: not UTF-8
    ],
)
def test_normal_text_is_readable(text):
    assert not is_unreadable(text)


# ---- response filters -------------------------------------------------------------------------

BAD = {
    "truncated": True,
    "parsed": False,
    "token_ids": PHRASE * 10,
    "text": "\u00c3\u00a9",
}
GOOD = {"truncated": False, "parsed": True, "token_ids": PHRASE, "text": "fine"}
FILTERS = ["overlong", "incomplete", "repetitive", "unreadable"]


def filters(*on: str, **extra) -> FilterConfig:
    """A FilterConfig with exactly the named response filters switched on."""
    return FilterConfig(**{f"filter_{name}": name in on for name in FILTERS}, **extra)


ALL_ON = filters(*FILTERS)


def test_every_switched_on_filter_fires_in_order():
    assert response_filter_reasons(**BAD, cfg=ALL_ON) == [
        "overlong",
        "incomplete",
        "repetitive",
        "unreadable",
    ]
    assert response_filter_reasons(**GOOD, cfg=ALL_ON) == []


@pytest.mark.parametrize("name", ["overlong", "incomplete", "repetitive", "unreadable"])
def test_a_switched_off_filter_never_fires(name):
    only_this = filters(name)
    assert response_filter_reasons(**BAD, cfg=only_this) == [name]
    all_but_this = filters(*(other for other in FILTERS if other != name))
    assert name not in response_filter_reasons(**BAD, cfg=all_but_this)
    assert response_filter_reasons(**BAD, cfg=filters()) == []


def test_repeat_settings_come_from_the_config():
    cfg = filters("repetitive", filter_repeat_ngram=2, filter_repeat_count=3)
    reasons = response_filter_reasons(
        truncated=False, parsed=True, token_ids=[1, 2, 1, 2, 1, 2], text="", cfg=cfg
    )
    assert reasons == ["repetitive"]


def test_apply_response_filters_keep_flags_and_counts():
    items = [
        (False, True, PHRASE, "ok"),  # kept
        (True, True, PHRASE, "ok"),  # overlong
        (True, False, PHRASE, "ok"),  # overlong + incomplete
        (False, True, PHRASE * 10, "\u00c3\u00a9"),  # repetitive + unreadable
        (False, False, PHRASE, "ok"),  # incomplete
    ]
    keep, counts = apply_response_filters(items, ALL_ON)
    assert keep == [True, False, False, False, False]
    assert counts == {"overlong": 2, "incomplete": 2, "repetitive": 1, "unreadable": 1}
    keep, counts = apply_response_filters(items, filters("incomplete"))
    assert keep == [True, True, False, True, False]
    assert counts == {"overlong": 0, "incomplete": 2, "repetitive": 0, "unreadable": 0}
    assert apply_response_filters([], ALL_ON) == ([], dict.fromkeys(counts, 0))


# ---- group filter -----------------------------------------------------------------------------


def test_keeps_the_three_largest_std_groups_of_four():
    ids, stds = [10, 11, 12, 13], [0.5, 0.0, 2.0, 1.0]
    assert select_groups(ids, stds, 0.75) == [10, 12, 13]  # floor(0.75 * 4) = 3, drops std 0
    assert select_groups(ids, stds, 0.75, mode="std_rev") == [10, 11, 13]  # drops std 2


def test_ties_go_to_the_group_listed_first():
    assert select_groups([5, 6, 7, 8], [1.0, 1.0, 1.0, 1.0], 0.5) == [5, 6]
    assert select_groups([5, 6, 7, 8], [1.0, 1.0, 1.0, 1.0], 0.5, mode="std_rev") == [5, 6]
    assert select_groups([5, 6, 7, 8], [0.0, 1.0, 0.0, 1.0], 0.25) == [6]
    assert select_groups([5, 6, 7, 8], [0.0, 1.0, 0.0, 1.0], 0.25, mode="std_rev") == [5]


def test_group_counts_ratio_edges_and_nan():
    assert select_groups([1, 2, 3], [0.1, 0.2, 0.3], 1.0) == [1, 2, 3]
    assert select_groups([1, 2, 3], [0.1, 0.2, 0.3], 5.0) == [1, 2, 3]
    assert select_groups([1, 2, 3, 4], [0.1, 0.4, 0.3, 0.2], 0.01) == [2]  # at least one
    assert select_groups([], [], 0.75) == []
    assert select_groups([1, 2], [float("nan"), 0.5], 0.5) == [2]  # NaN counts as 0
    assert select_groups([1, 2], [float("nan"), -0.5], 0.5, mode="std") == [1]
    kept = select_groups(list(range(100)), [float(i) for i in range(100)], 0.29)
    assert kept == list(range(71, 100))  # floor(0.29 * 100) = 29 despite 28.999... in floats


def test_group_filter_rejects_bad_input():
    with pytest.raises(ValueError, match="std, std_rev"):
        select_groups([1], [0.0], 0.5, mode="variance")
    with pytest.raises(ValueError, match="must be > 0"):
        select_groups([1], [0.0], 0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        select_groups([1], [0.0], float("nan"))
    with pytest.raises(ValueError, match="2 group ids but 1"):
        select_groups([1, 2], [0.0], 0.5)
    with pytest.raises(ValueError, match="unique"):
        select_groups([1, 1], [0.0, 1.0], 0.5)
