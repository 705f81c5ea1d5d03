"""WebShop's purchase score against hand-computed cases."""

from __future__ import annotations

import pytest

from spear_rl.envs.webshop.catalogue import Product
from spear_rl.envs.webshop.instructions import goal_for_product
from spear_rl.envs.webshop.reward import score_purchase, type_match_factor


def product(
    product_type="dark chocolate bar",
    department="grocery",
    aisle="snacks",
    attributes=("gluten free", "non gmo", "low sugar"),
    options=(("flavor", ("sea salt", "almond")), ("count", ("6 pack", "12 pack"))),
    price=25.0,
    title="Acme Classic Bar",
    description="A bar of chocolate.",
    features=("Tasty",),
) -> Product:
    return Product(
        index=0,
        product_id="B0TEST0001",
        title=title,
        product_type=product_type,
        department=department,
        aisle=aisle,
        attributes=attributes,
        options=options,
        price=price,
        description=description,
        features=features,
    )


TARGET = product()
# 2 attributes + 2 options + price: denominator 5
GOAL = goal_for_product(
    TARGET, ("gluten free", "non gmo"), (("flavor", "sea salt"), ("count", "12 pack")), 30.0
)
BOTH = {"flavor": "sea salt", "count": "12 pack"}


def test_exact_purchase_scores_one():
    result = score_purchase(TARGET, GOAL, BOTH)
    assert result.score == 1.0 and result.success
    assert (result.matched_attributes, result.matched_options, result.price_ok) == (2, 2, True)
    assert (result.type_factor, result.title_score) == (1.0, 1.0)


def test_options_not_clicked():
    result = score_purchase(TARGET, GOAL, {})
    assert result.score == pytest.approx(3 / 5) and not result.success


def test_one_wrong_option():
    result = score_purchase(TARGET, GOAL, {"flavor": "almond", "count": "12 pack"})
    assert result.score == pytest.approx(4 / 5)


def test_option_value_matches_case_insensitively():
    result = score_purchase(TARGET, GOAL, {"flavor": "Sea Salt", "count": "12 PACK"})
    assert result.score == 1.0


def test_price_above_ceiling():
    cheap_goal = goal_for_product(TARGET, GOAL.attributes, GOAL.options, 20.0)
    assert score_purchase(TARGET, cheap_goal, BOTH).score == pytest.approx(4 / 5)
    at_ceiling = goal_for_product(TARGET, GOAL.attributes, GOAL.options, 25.0)
    assert score_purchase(TARGET, at_ceiling, BOTH).score == 1.0


def test_partial_attribute_match():
    other = product(attributes=("gluten free", "certified organic"))
    result = score_purchase(other, GOAL, BOTH)
    assert result.matched_attributes == 1
    assert result.score == pytest.approx(4 / 5)


def test_attribute_found_in_description_counts():
    other = product(attributes=("certified organic",), description="Made with non gmo cocoa.")
    # gluten free: nowhere; non gmo: in the description
    assert score_purchase(other, GOAL, BOTH).score == pytest.approx(4 / 5)


def test_attribute_in_title_or_features_counts():
    in_title = product(attributes=(), title="Acme Gluten Free Bar", features=("Non GMO",))
    assert score_purchase(in_title, GOAL, BOTH).score == 1.0


def test_everything_wrong_but_the_type():
    other = product(attributes=("low sugar",), price=99.0)
    assert score_purchase(other, GOAL, {}).score == 0.0


def test_wrong_type_scores_zero():
    mouse = product(product_type="wireless mouse", department="electronics", aisle="computer")
    assert type_match_factor(mouse, GOAL) == (0.0, 0.0)
    assert score_purchase(mouse, GOAL, BOTH).score == 0.0


def test_same_aisle_without_shared_words_still_zero():
    # WebShop: a title score of 0 overrides a category match
    trail_mix = product(product_type="trail mix")
    assert type_match_factor(trail_mix, GOAL) == (0.0, 0.0)


def test_shared_type_word_gets_full_type_credit():
    # "protein bar" shares 1 of 3 words with "dark chocolate bar": 1/3 > 0.2 -> factor 1.0
    granola = product(product_type="protein bar", department="grocery", aisle="breakfast")
    factor, title_score = type_match_factor(granola, GOAL)
    assert (factor, title_score) == (1.0, pytest.approx(1 / 3))
    assert score_purchase(granola, GOAL, BOTH).score == 1.0


def test_weak_type_match_halves_the_score():
    # goal type of 5 words sharing 1 with the purchase: title score 0.2 (not > 0.2), other aisle
    big = product(product_type="extra large dark chocolate bar")
    big_goal = goal_for_product(big, ("gluten free",), (("flavor", "sea salt"),), 30.0)
    granola = product(product_type="granola bar", aisle="breakfast")
    assert type_match_factor(granola, big_goal) == (0.5, pytest.approx(0.2))
    # 1 attribute + 1 option + price all matched: 0.5 * 3 / 3
    assert score_purchase(granola, big_goal, {"flavor": "sea salt"}).score == pytest.approx(0.5)
    # same category lifts the factor back to 1.0
    same_aisle = product(product_type="granola bar", aisle="snacks")
    assert type_match_factor(same_aisle, big_goal)[0] == 1.0


def test_very_weak_type_match():
    # 1 shared word out of 11: title score 1/11 < 0.1 -> factor 0.1
    long_type = "super extra large premium swiss dark chocolate candy gift box bar"
    long = product(product_type=long_type)
    long_goal = goal_for_product(long, ("gluten free",), (), 30.0)
    granola = product(product_type="granola bar", aisle="breakfast")
    factor, title_score = type_match_factor(granola, long_goal)
    assert (factor, title_score) == (0.1, pytest.approx(1 / 11))
    # (1 attribute + price) / (1 + 0 + 1), times 0.1
    assert score_purchase(granola, long_goal, {}).score == pytest.approx(0.1)
