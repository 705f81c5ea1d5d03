"""Shopping instructions in WebShop's style, built from a target product.

A goal is the target's product type, a subset of its attributes, one chosen value for each of its
option groups and a price ceiling, e.g. "i'm looking for a gluten free dark chocolate bar in sea salt
flavor and in a 12 pack, and price lower than 30.00 dollars".

Task seeds below EVAL_SEED_OFFSET draw their target from the catalogue's training targets, seeds at
or above it from the held-out targets: the two instruction sets never share a target product.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from spear_rl.envs.base import EVAL_SEED_OFFSET
from spear_rl.envs.webshop.catalogue import Catalogue, Product, is_plural
from spear_rl.envs.webshop.vocabulary import OPTION_PHRASES

# WebShop's price ceilings are multiples of ten above the price: it takes the four nearest and uses
# the larger of two drawn at random.
PRICE_STEP = 10.0
PRICE_CEILING_CANDIDATES = 4
MAX_GOAL_ATTRIBUTES = 3

_OPENINGS = (
    "i'm looking for",
    "i need",
    "find me",
    "i want to buy",
    "i am searching for",
    "please get me",
)


@dataclass(frozen=True)
class Goal:
    task_seed: int
    target_index: int  # catalogue index of the product the instruction was built from
    product_type: str
    department: str
    aisle: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]  # (group, value), one per option group of the target
    price_upper: float
    instruction: str


def make_goal(catalogue: Catalogue, task_seed: int) -> Goal:
    """The goal for a task seed: deterministic; held-out targets for seeds >= EVAL_SEED_OFFSET."""
    held_out = task_seed >= EVAL_SEED_OFFSET
    pool = catalogue.eval_targets if held_out else catalogue.train_targets
    rng = random.Random(f"webshop-goal:{catalogue.seed}:{task_seed}")
    target = catalogue.products[pool[rng.randrange(len(pool))]]
    num_attributes = rng.randint(1, min(MAX_GOAL_ATTRIBUTES, len(target.attributes)))
    attributes = tuple(rng.sample(target.attributes, num_attributes))
    options = tuple((group, rng.choice(values)) for group, values in target.options)
    price_upper = _price_ceiling(target.price, rng)
    instruction = instruction_text(target.product_type, attributes, options, price_upper, rng)
    return Goal(
        task_seed=task_seed,
        target_index=target.index,
        product_type=target.product_type,
        department=target.department,
        aisle=target.aisle,
        attributes=attributes,
        options=options,
        price_upper=price_upper,
        instruction=instruction,
    )


def goal_for_product(product: Product, attributes, options, price_upper: float) -> Goal:
    """A goal built by hand around a product (tests, custom tasks); the instruction is canonical."""
    attributes, options = tuple(attributes), tuple(options)
    text = instruction_text(product.product_type, attributes, options, price_upper, None)
    return Goal(
        task_seed=-1,
        target_index=product.index,
        product_type=product.product_type,
        department=product.department,
        aisle=product.aisle,
        attributes=attributes,
        options=options,
        price_upper=price_upper,
        instruction=text,
    )


def _price_ceiling(price: float, rng: random.Random) -> float:
    above = int(price // PRICE_STEP) + 1
    candidates = [PRICE_STEP * (above + i) for i in range(PRICE_CEILING_CANDIDATES)]
    return max(rng.sample(candidates, 2))


def instruction_text(
    product_type: str,
    attributes: tuple[str, ...],
    options: tuple[tuple[str, str], ...],
    price_upper: float,
    rng: random.Random | None,
) -> str:
    """WebShop-style text; `rng` picks the phrasing (None: the first phrasing, attributes first)."""
    opening = _OPENINGS[0] if rng is None else rng.choice(_OPENINGS)
    attrs_first = rng is None or rng.random() < 0.5
    noun = product_type
    if attributes and attrs_first:
        noun = f"{_and_list(attributes)} {product_type}"
    plural = is_plural(product_type)
    if not plural:
        noun = ("an " if noun[0] in "aeiou" else "a ") + noun
    if attributes and not attrs_first:
        noun += f" that {'are' if plural else 'is'} {_and_list(attributes)}"
    phrases = [OPTION_PHRASES.get(group, "in {}").format(value) for group, value in options]
    wanted = noun + ("" if not phrases else " " + " and ".join(phrases))
    return f"{opening} {wanted}, and price lower than {price_upper:.2f} dollars"


def _and_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
