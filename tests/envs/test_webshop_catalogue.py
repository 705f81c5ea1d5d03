"""WebShop catalogue, vocabulary rules, instructions and search."""

from __future__ import annotations

import random

import pytest

from spear_rl.envs.base import EVAL_SEED_OFFSET
from spear_rl.envs.webshop.catalogue import build_catalogue
from spear_rl.envs.webshop.instructions import goal_for_product, instruction_text, make_goal
from spear_rl.envs.webshop.search import MAX_SEARCH_RESULTS, tokenize
from spear_rl.envs.webshop.vocabulary import BRANDS, DESCRIPTORS, PRODUCT_TYPES


@pytest.fixture(scope="module")
def catalogue():
    return build_catalogue(0, 5000)


def test_catalogue_size_and_spread(catalogue):
    assert len(catalogue) == 5000
    departments = {p.department for p in catalogue.products}
    assert {"clothing", "beauty", "grocery", "electronics", "home"} <= departments
    per_type = {}
    for p in catalogue.products:
        per_type[p.product_type] = per_type.get(p.product_type, 0) + 1
    assert len(per_type) == len(PRODUCT_TYPES) >= 50
    assert min(per_type.values()) >= 5000 // len(PRODUCT_TYPES)


def test_products_are_well_formed(catalogue):
    ids = [p.product_id for p in catalogue.products]
    titles = [p.title for p in catalogue.products]
    assert len(set(ids)) == len(ids) and len(set(titles)) == len(titles)
    types = {t.name: t for t in PRODUCT_TYPES}
    for p in catalogue.products:
        assert len(p.product_id) == 10 and p.product_id.startswith("B0")
        kind = types[p.product_type]
        low, high = kind.price_range
        assert low <= p.price <= high
        assert 3 <= len(p.attributes) <= 5 and set(p.attributes) <= set(kind.attributes)
        assert [g for g, _ in p.options] == [g for g, _ in kind.options]
        for group, values in p.options:
            pool = dict(kind.options)[group]
            assert values and set(values) <= set(pool)
        assert catalogue.find(p.product_id.lower()) is p


def test_vocabulary_rules():
    names = [t.name for t in PRODUCT_TYPES]
    assert len(set(names)) == len(names)
    all_attributes = {a for t in PRODUCT_TYPES for a in t.attributes}
    for kind in PRODUCT_TYPES:
        seen: set[str] = set()
        for _, values in kind.options:
            assert not any("/" in v for v in values)
            # a click names exactly one option of an item
            assert not seen & set(values), kind.name
            seen |= set(values)
    for word in BRANDS + DESCRIPTORS:
        assert not any(a in word.lower() for a in all_attributes), word


def test_catalogue_is_deterministic_and_cached():
    assert build_catalogue(0, 5000) is build_catalogue(0, 5000)
    fresh = build_catalogue.__wrapped__(0, 5000)
    assert fresh.products == build_catalogue(0, 5000).products
    other = build_catalogue.__wrapped__(1, 5000)
    assert other.products[0] != fresh.products[0]


def test_train_and_held_out_targets_are_disjoint(catalogue):
    train, held_out = set(catalogue.train_targets), set(catalogue.eval_targets)
    assert not train & held_out and len(train | held_out) == len(catalogue)
    assert len(held_out) == 500
    for seed in range(300):
        assert make_goal(catalogue, seed).target_index in train
        assert make_goal(catalogue, EVAL_SEED_OFFSET + seed).target_index in held_out


def test_goal_is_built_from_its_target(catalogue):
    for seed in list(range(100)) + [EVAL_SEED_OFFSET + s for s in range(100)]:
        goal = make_goal(catalogue, seed)
        assert goal == make_goal(catalogue, seed)
        target = catalogue.products[goal.target_index]
        assert goal.product_type == target.product_type
        assert 1 <= len(goal.attributes) <= 3 and set(goal.attributes) <= set(target.attributes)
        assert [g for g, _ in goal.options] == [g for g, _ in target.options]
        for group, value in goal.options:
            assert value in dict(target.options)[group]
            assert value in goal.instruction
        # WebShop's ceilings: a multiple of ten, above the price, within the four nearest
        assert goal.price_upper % 10 == 0 and target.price < goal.price_upper
        assert goal.price_upper <= (target.price // 10 + 4) * 10
        assert goal.instruction.endswith(f", and price lower than {goal.price_upper:.2f} dollars")
        assert target.product_type in goal.instruction
        assert all(a in goal.instruction for a in goal.attributes)


def test_instruction_text_canonical_phrasing(catalogue):
    bar = next(p for p in catalogue.products if p.product_type == "dark chocolate bar")
    text = instruction_text(
        "dark chocolate bar",
        ("gluten free", "non gmo"),
        (("flavor", "sea salt"), ("count", "12 pack")),
        30.0,
        None,
    )
    assert text == (
        "i'm looking for a gluten free and non gmo dark chocolate bar in sea salt flavor and in a "
        "12 pack, and price lower than 30.00 dollars"
    )
    shoes = instruction_text("running shoes", ("arch support",), (("size", "9.5"),), 80.0, None)
    assert (
        shoes
        == "i'm looking for arch support running shoes in size 9.5, and price lower than 80.00 dollars"
    )
    goal = goal_for_product(bar, ("gluten free",), (), 50.0)
    assert goal.instruction == (
        "i'm looking for a gluten free dark chocolate bar, and price lower than 50.00 dollars"
    )


def test_instructions_vary_in_phrasing(catalogue):
    openings = {make_goal(catalogue, s).instruction.split(" a")[0][:12] for s in range(200)}
    assert len(openings) >= 4
    texts = {make_goal(catalogue, s).instruction for s in range(500)}
    assert len(texts) >= 490


def test_search_returns_at_most_fifty_relevant_products(catalogue):
    results = catalogue.search("gluten free dark chocolate bar")
    assert len(results) == MAX_SEARCH_RESULTS
    top = catalogue.products[results[0]]
    assert top.product_type == "dark chocolate bar" and "gluten free" in top.attributes
    assert catalogue.search("zzzz qqqq") == ()
    assert catalogue.search("") == ()
    assert catalogue.search(top.product_id)[0] == top.index
    assert catalogue.search("Gluten  FREE dark chocolate bar!") == results


def test_search_finds_most_targets_on_the_first_page(catalogue):
    rng = random.Random(0)
    seeds = rng.sample(range(EVAL_SEED_OFFSET), 100)
    first_page = 0
    for seed in seeds:
        goal = make_goal(catalogue, seed)
        results = catalogue.search(goal.instruction)
        first_page += goal.target_index in results[:10]
    assert first_page >= 70


def test_tokenize_drops_stop_words_and_keeps_decimals():
    assert tokenize("The 1.7 fl oz Bottle, and a T-Shirt") == [
        "1.7",
        "fl",
        "oz",
        "bottle",
        "t",
        "shirt",
    ]
