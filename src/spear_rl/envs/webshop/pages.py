"""The five page views as text, in WebShop's text mode: parts joined by " [SEP] ".

Every view is a pure function of plain page data, so the generated env and the HTTP adapter render
the same state to the same text (the observation is also the GiGPO anchor). A view carries its
clickable elements (lower case, as WebShop lists them) and whether it has a search box.

    search   WebShop [SEP] Instruction: [SEP] <instruction> [SEP] Search
    results  Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] <ID> [SEP] <title>
             [SEP] <price> [SEP] ...                                   (ten products per page)
    item     Back to Search [SEP] < Prev [SEP] <group> [SEP] <value> [SEP] ... [SEP] <title>
             [SEP] Price: <price> [SEP] Description [SEP] Features [SEP] Buy Now
    detail   Back to Search [SEP] < Prev [SEP] <description, or one part per feature>
    done     Thank you for shopping with us! [SEP] Purchased: <ID> [SEP] Your score (min 0.0,
             max 1.0) [SEP] <score>
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SEP = " [SEP] "
BACK_TO_SEARCH = "Back to Search"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
DESCRIPTION = "Description"
FEATURES = "Features"
BUY_NOW = "Buy Now"
SEARCH_PLACEHOLDER = "search[<your query>]"
RESULTS_PER_PAGE = 10


def element_key(text: str) -> str:
    """How clicks are matched: case-insensitive, whitespace collapsed."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class PageView:
    kind: str  # "search" | "results" | "item" | "detail" | "done"
    text: str
    clickables: tuple[str, ...]  # element keys, in page order
    has_search_bar: bool = False

    def admissible_actions(self) -> list[str]:
        searches = [SEARCH_PLACEHOLDER] if self.has_search_bar else []
        return searches + [f"click[{element}]" for element in self.clickables]


@dataclass(frozen=True)
class ResultRow:
    product_id: str
    title: str
    price_text: str


def search_view(instruction: str) -> PageView:
    return PageView(
        "search", SEP.join(["WebShop", "Instruction:", instruction, "Search"]), (), True
    )


def results_view(page_num: int, total: int, rows: Sequence[ResultRow]) -> PageView:
    has_prev = page_num > 1
    has_next = page_num * RESULTS_PER_PAGE < total
    buttons = [BACK_TO_SEARCH] + [PREV_PAGE] * has_prev + [NEXT_PAGE] * has_next
    parts = [BACK_TO_SEARCH, f"Page {page_num} (Total results: {total})", *buttons[1:]]
    for row in rows:
        parts += [row.product_id, row.title, row.price_text]
    clickables = [element_key(b) for b in buttons] + [element_key(r.product_id) for r in rows]
    return PageView("results", SEP.join(parts), tuple(clickables))


def item_view(
    title: str,
    price_text: str,
    option_groups: Sequence[tuple[str, Sequence[str]]],
    selected: Mapping[str, str],
) -> PageView:
    parts = [BACK_TO_SEARCH, PREV_PAGE]
    values: list[str] = []
    for group, group_values in option_groups:
        parts += [group, *group_values]
        values += group_values
    chosen = [f"{group}: {selected[group]}" for group, _ in option_groups if group in selected]
    if chosen:
        parts.append("Selected options: " + ", ".join(chosen))
    parts += [title, f"Price: {price_text}", DESCRIPTION, FEATURES, BUY_NOW]
    buttons = [BACK_TO_SEARCH, PREV_PAGE, *values, DESCRIPTION, FEATURES, BUY_NOW]
    return PageView("item", SEP.join(parts), tuple(element_key(b) for b in buttons))


def detail_view(lines: Sequence[str]) -> PageView:
    parts = [BACK_TO_SEARCH, PREV_PAGE, *lines]
    return PageView(
        "detail", SEP.join(parts), (element_key(BACK_TO_SEARCH), element_key(PREV_PAGE))
    )


def done_view(product_id: str, score: float) -> PageView:
    parts = [
        "Thank you for shopping with us!",
        f"Purchased: {product_id}",
        "Your score (min 0.0, max 1.0)",
        f"{score:.2f}",
    ]
    return PageView("done", SEP.join(parts), ())
