"""Checking a WebShop action (`search[query]` or `click[element]`) against the current page.

Model text is untrusted: anything that is not a well-formed action naming something on the page
comes back as a `Rejection` with feedback that says what to do instead, never as an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spear_rl.envs.parsing import MAX_ACTION_CHARS
from spear_rl.envs.webshop.pages import BACK_TO_SEARCH, PageView, element_key

# Longer queries are rejected (the action parser already caps actions at 200 characters).
MAX_QUERY_CHARS = 200
_ACTION_RE = re.compile(r"^(search|click)\[(.*)\]$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Accepted:
    verb: str  # "search" or "click"
    argument: str  # the query (whitespace collapsed) or the clicked element's key


@dataclass(frozen=True)
class Rejection:
    feedback: str


def check_action(action: str, view: PageView) -> Accepted | Rejection:
    """Accept `action` when it is possible on `view`; otherwise say why not."""
    if isinstance(action, str) and len(action) > MAX_ACTION_CHARS:
        # callers that skip the tag parser get its cap too: no regex over an unbounded reply
        return Rejection(f"Invalid action: an action has at most {MAX_ACTION_CHARS} characters.")
    match = _ACTION_RE.match(action.strip()) if isinstance(action, str) else None
    if match is None:
        shown = action if isinstance(action, str) and len(action) <= 80 else "this action"
        return Rejection(
            f"Invalid action {shown!r}: write search[your query] or click[element] with an element "
            "from the list of admissible actions."
        )
    verb, argument = match.group(1).lower(), " ".join(match.group(2).split())
    if verb == "search":
        if not view.has_search_bar:
            return Rejection(
                "Invalid action: there is no search box on this page; "
                f"click[{element_key(BACK_TO_SEARCH)}] first."
            )
        if not any(ch.isalnum() for ch in argument):
            return Rejection(
                "Invalid action: a search needs a query with words, e.g. search[red rain jacket]."
            )
        if len(argument) > MAX_QUERY_CHARS:
            return Rejection(f"Invalid action: a query has at most {MAX_QUERY_CHARS} characters.")
        return Accepted("search", argument)
    key = element_key(argument)
    if key not in view.clickables:
        listed = ", ".join(view.clickables) or "nothing (use search[...])"
        shown = key if len(key) <= 80 else key[:77] + "..."
        return Rejection(
            f"Invalid action: {shown!r} is not clickable on this page; clickable: {listed}."
        )
    return Accepted("click", key)
