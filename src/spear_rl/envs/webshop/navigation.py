"""WebShop's page-to-page navigation, shared by the generated env and the HTTP adapter.

A `PageState` says which page is shown (search, results, item, detail, done) and what it shows
(query, results page number, product, chosen options, detail part); `next_state` is where an
accepted action leads. Only how a product is named differs between the two envs (a catalogue index
in the generated env, an ASIN for the server), so that lookup is passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from spear_rl.envs.webshop.actions import Accepted
from spear_rl.envs.webshop.pages import (
    BACK_TO_SEARCH,
    BUY_NOW,
    DESCRIPTION,
    FEATURES,
    NEXT_PAGE,
    PREV_PAGE,
    element_key,
)

P = TypeVar("P")  # how a product is named: a catalogue index, or a server's ASIN

BACK, NEXT, PREV, BUY = (element_key(b) for b in (BACK_TO_SEARCH, NEXT_PAGE, PREV_PAGE, BUY_NOW))
DETAIL_PARTS = (element_key(DESCRIPTION), element_key(FEATURES))  # "description", "features"
OptionGroups = Sequence[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class PageState(Generic[P]):
    """Everything the current page shows; the observation is rendered from it alone."""

    kind: str = "search"  # "search" | "results" | "item" | "detail" | "done"
    query: str = ""  # the search as accepted (whitespace collapsed)
    page_num: int = 1
    product: P | None = None  # on item/detail/done pages
    selected: tuple[tuple[str, str], ...] = ()  # (group, value) in the item's group order
    detail: str = ""  # one of DETAIL_PARTS on a detail page
    score: float = 0.0  # purchase score on the done page (the generated env's)


def next_state(
    state: PageState[P],
    action: Accepted,
    product_named: Callable[[str], P],
    option_groups: Callable[[P], OptionGroups],
) -> PageState[P]:
    """The page `action` (accepted on the page `state` shows) leads to. `product_named` maps a
    clicked id's key on a results page to the product; `option_groups` gives a product's option
    groups and their values."""
    if action.verb == "search":
        return PageState("results", query=action.argument)
    element = action.argument
    if element == BACK:
        return PageState()
    if state.kind == "results":
        if element in (NEXT, PREV):
            step = 1 if element == NEXT else -1
            return dataclasses.replace(state, page_num=state.page_num + step)
        return PageState("item", state.query, state.page_num, product_named(element))
    if state.kind == "item":
        assert state.product is not None
        if element == PREV:
            return PageState("results", state.query, state.page_num)
        if element in DETAIL_PARTS:
            return dataclasses.replace(state, kind="detail", detail=element)
        if element == BUY:
            return dataclasses.replace(state, kind="done")
        return _select_option(state, element, option_groups(state.product))
    return dataclasses.replace(state, kind="item", detail="")  # detail: "< prev" to the item


def _select_option(state: PageState[P], element: str, groups: OptionGroups) -> PageState[P]:
    selected = dict(state.selected)
    for group, values in groups:
        for value in values:
            if element_key(value) == element:
                selected[group] = value
    ordered = tuple((g, selected[g]) for g, _ in groups if g in selected)
    return dataclasses.replace(state, selected=ordered)
