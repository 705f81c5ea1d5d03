"""WebShop's purchase score.

    score = type_factor * (matched attributes + matched options + [price <= ceiling])
                        / (number of goal attributes + number of goal options + 1)

The type factor follows WebShop's rule: 1.0 when the purchase is of the goal's product type, in
its category (same department and aisle) or shares more than 20% of the goal type's words; 0.5
otherwise; 0.1 when it shares under 10% of them; 0.0 when it shares none. (WebShop compares the
nouns of the two product names with spaCy; our product names are built from the type name, so we
compare the words of the two type names.)

A goal attribute matches when the product has it or it appears in the product's title, description
or features (WebShop also accepts fuzzy matches; our vocabulary is canonical, so exact is enough). A
goal option matches when its value is among the option values clicked before buying. Success is a
score of 1.0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from spear_rl.envs.webshop.catalogue import Product
from spear_rl.envs.webshop.instructions import Goal

_WORD_RE = re.compile(r"[a-z0-9]+")
# Floating-point slack for "score is exactly 1.0".
_SUCCESS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PurchaseScore:
    score: float
    type_factor: float
    title_score: float  # share of the goal type's words found in the purchased type
    matched_attributes: int
    matched_options: int
    price_ok: bool
    num_attributes: int
    num_options: int

    @property
    def success(self) -> bool:
        return self.score >= 1.0 - _SUCCESS_TOLERANCE


def type_match_factor(product: Product, goal: Goal) -> tuple[float, float]:
    """(type factor, title score) of buying `product` for `goal`."""
    goal_words = set(_WORD_RE.findall(goal.product_type.lower()))
    product_words = set(_WORD_RE.findall(product.product_type.lower()))
    title_score = len(goal_words & product_words) / len(goal_words) if goal_words else 0.2
    same_type = product.product_type == goal.product_type
    same_category = (product.department, product.aisle) == (goal.department, goal.aisle)
    factor = 1.0 if (same_type or same_category or title_score > 0.2) else 0.5
    if title_score < 0.1:
        factor = 0.1
    if title_score == 0.0:
        factor = 0.0
    return factor, title_score


def score_purchase(
    product: Product, goal: Goal, chosen_options: Mapping[str, str]
) -> PurchaseScore:
    """Score buying `product` with `chosen_options` ({group: value} as clicked) for `goal`."""
    own_attributes = {a.lower() for a in product.attributes}
    text = product.text
    matched_attributes = sum(
        1 for a in goal.attributes if a.lower() in own_attributes or a.lower() in text
    )
    chosen_values = {v.lower() for v in chosen_options.values()}
    matched_options = sum(1 for _, value in goal.options if value.lower() in chosen_values)
    price_ok = product.price <= goal.price_upper
    factor, title_score = type_match_factor(product, goal)
    denominator = len(goal.attributes) + len(goal.options) + 1
    score = factor * (matched_attributes + matched_options + int(price_ok)) / denominator
    return PurchaseScore(
        score=score,
        type_factor=factor,
        title_score=title_score,
        matched_attributes=matched_attributes,
        matched_options=matched_options,
        price_ok=price_ok,
        num_attributes=len(goal.attributes),
        num_options=len(goal.options),
    )
