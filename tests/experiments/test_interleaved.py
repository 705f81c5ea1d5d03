"""Interleaved A/B pairs: alternating order and the median ratio with its range."""

import math

import pytest

from spear_rl.experiments.interleaved import format_spread, pair_orders, pair_ratios, spread


def test_the_side_that_goes_first_alternates_pair_by_pair():
    assert pair_orders(4, ("trl", "spear")) == [
        ("trl", "spear"),
        ("spear", "trl"),
        ("trl", "spear"),
        ("spear", "trl"),
    ]
    assert pair_orders(2, ("trl", "spear"), offset=1) == [("spear", "trl"), ("trl", "spear")]


def test_ratios_are_taken_pair_by_pair_and_summarised_by_median_and_range():
    ratios = pair_ratios([2.0, 3.0, 1.0], [1.0, 2.0, 2.0])
    assert ratios == [2.0, 1.5, 0.5]
    stats = spread(ratios)
    assert (stats["median"], stats["min"], stats["max"], stats["n"]) == (1.5, 0.5, 2.0, 3)
    assert format_spread(stats, unit="x") == "1.50x (0.50–2.00)"
    assert math.isnan(spread([])["median"])
    with pytest.raises(ValueError, match="2 numerators but 1"):
        pair_ratios([1.0, 2.0], [1.0])
