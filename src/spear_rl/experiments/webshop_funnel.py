"""Where WebShop episodes fail: a per-stage funnel of a policy's trajectories.

Success alone says little about a weak policy (0/48 looks the same whether it never searches or
buys the right item in the wrong size). `episode_funnel` replays a trajectory's actions in a fresh
generated-catalogue env on the same task seed (the env is deterministic) and records how far the
episode got: searched, how much of the instruction the first query kept, a product that would
score 1.0 shown on a results page, such a product opened, all the goal's options clicked on it,
a purchase, and on which page each invalid turn happened. It also records the first product the
policy tried to open from a results page (its rank on the page, or "unlisted" for an id the page
does not show) and whether the top result of the first search satisfied the goal: the oracle
nearly always opens the top result, so these separate "cannot copy an id" from "picks the wrong
one".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from spear_rl.envs.webshop.env import WebShopEnv
from spear_rl.envs.webshop.pages import (
    BACK_TO_SEARCH,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS_PER_PAGE,
    element_key,
)
from spear_rl.rollout.sample import Trajectory

STAGES = (
    "searched",
    "good_product_listed",
    "good_product_opened",
    "options_complete",
    "bought",
    "won",
)
_WORD_RE = re.compile(r"[a-z0-9]+")
_PRICE_CLAUSE = ", and price lower than"
_CLICK_RE = re.compile(r"^click\[(.*)\]$", re.IGNORECASE | re.DOTALL)
_PAGE_LINKS = tuple(element_key(link) for link in (NEXT_PAGE, PREV_PAGE, BACK_TO_SEARCH))


def instruction_words(instruction: str) -> set[str]:
    """The instruction's words without its price clause (a query need not say the price)."""
    return set(_WORD_RE.findall(instruction.split(_PRICE_CLAUSE, 1)[0].lower()))


def episode_funnel(env: WebShopEnv, trajectory: Trajectory) -> dict:
    """Replay `trajectory` in `env` and return how far it got (see STAGES) plus the first query's
    recall of the instruction's words and the page kind of each invalid turn."""
    env.reset(trajectory.task_seed)
    assert env.goal is not None
    goal_words = instruction_words(env.goal.instruction)
    goal_options = set(env.goal.options)
    reached = dict.fromkeys(STAGES, False)
    first_query: str | None = None
    first_pick: int | str | None = None
    top_result_good: bool | None = None
    invalid_pages: list[str] = []
    for turn in trajectory.turns:
        page = env.state.kind
        if env.done:
            break
        if turn.action is None:
            invalid_pages.append(f"{page}: no action")
            continue
        if page == "results" and first_pick is None:
            first_pick = _pick_rank(env, turn.action)
        result = env.step(env.format_action(turn.action))
        if not result.info.get("valid", True):
            invalid_pages.append(f"{page}: rejected")
            continue
        state = env.state
        if state.kind == "results":
            reached["searched"] = True
            listed = _listed(env)
            if first_query is None:
                first_query = state.query
                top_result_good = bool(listed) and env.satisfies_goal(listed[0])
            if any(env.satisfies_goal(i) for i in listed):
                reached["good_product_listed"] = True
        if state.kind in ("item", "done") and env.satisfies_goal(state.product):
            reached["good_product_opened"] = True
            if goal_options <= set(state.selected):
                reached["options_complete"] = True
        if state.kind == "done":
            reached["bought"], reached["won"] = True, env.won
    query_words = set(_WORD_RE.findall((first_query or "").lower()))
    recall = len(goal_words & query_words) / max(1, len(goal_words)) if first_query else None
    return {
        **reached,
        "query_recall": recall,
        "score": env.last_score.score if env.last_score else None,
        "first_pick": first_pick,
        "top_result_good": top_result_good,
        "invalid_pages": invalid_pages,
    }


def _pick_rank(env: WebShopEnv, action: str) -> int | str | None:
    """The rank on the current results page of the product `action` clicks ("unlisted" for an id
    the page does not show); None for anything that is not a product click."""
    match = _CLICK_RE.match(action.strip())
    clicked = element_key(match.group(1)) if match else None
    if clicked is None or clicked in _PAGE_LINKS:
        return None
    listed = [element_key(env.shown_id(i)) for i in _listed(env)]
    return listed.index(clicked) if clicked in listed else "unlisted"


def _listed(env: WebShopEnv) -> tuple[int, ...]:
    """Catalogue indices of the products on the current results page."""
    start = (env.state.page_num - 1) * RESULTS_PER_PAGE
    return env.catalogue.search(env.state.query)[start : start + RESULTS_PER_PAGE]


def funnel_summary(
    env_factory: Callable[[], WebShopEnv], trajectories: Iterable[Trajectory]
) -> dict:
    """The share of episodes that reached each stage, the mean first-query recall and purchase
    score, and the invalid turns counted by page."""
    env = env_factory()
    rows = [episode_funnel(env, t) for t in trajectories]
    env.close()
    n = max(1, len(rows))
    recalls = [r["query_recall"] for r in rows if r["query_recall"] is not None]
    scores = [r["score"] for r in rows if r["score"] is not None]
    picks = [r["first_pick"] for r in rows if r["first_pick"] is not None]
    tops = [r["top_result_good"] for r in rows if r["top_result_good"] is not None]
    return {
        "episodes": len(rows),
        **{stage: sum(r[stage] for r in rows) / n for stage in STAGES},
        "first_query_recall": sum(recalls) / len(recalls) if recalls else None,
        "purchase_score": sum(scores) / len(scores) if scores else None,
        # among episodes that tried to open a product from a results page
        "first_pick_top": picks.count(0) / len(picks) if picks else None,
        "first_pick_unlisted": picks.count("unlisted") / len(picks) if picks else None,
        # among episodes that searched: would opening the top result have been right?
        "top_result_good": sum(tops) / len(tops) if tops else None,
        "invalid_turns_by_page": dict(
            Counter(p for r in rows for p in r["invalid_pages"]).most_common()
        ),
    }


def checkpoint_label(path: Path) -> str:
    """`RUN/checkpoints/step_000030` -> `RUN/step_000030`, so two runs' checkpoints stay apart."""
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}/{path.name}"
    return path.name
