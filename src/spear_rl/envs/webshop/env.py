"""The WebShop environment on the generated catalogue ("webshop"): pure Python, runs anywhere.

An episode: the agent reads an instruction, searches, pages through results, opens items, picks
options and buys. The purchase is scored with WebShop's formula (`reward.py`); the env reward is
SUCCESS_REWARD for a score of 1.0 (plus the score itself with `dense_score=True`). The episode ends
at the purchase or after `max_turns` valid actions (invalid actions change nothing and do not count).

With `shuffle_ids=True` the products' ids are permuted afresh in every episode (a pure function of
the task seed), so an agent must read the id it clicks off the page, as with WebShop's 1.18M
products, instead of recalling the id of a product it has bought before in a small catalogue.
"""

from __future__ import annotations

import dataclasses
import random

from spear_rl.envs.base import Env, StepResult, register_env
from spear_rl.envs.parsing import MAX_ACTION_CHARS
from spear_rl.envs.webshop.actions import Rejection, check_action
from spear_rl.envs.webshop.catalogue import DEFAULT_NUM_PRODUCTS, Catalogue, build_catalogue
from spear_rl.envs.webshop.instructions import Goal, make_goal
from spear_rl.envs.webshop.navigation import BACK, BUY, NEXT, PREV, PageState, next_state
from spear_rl.envs.webshop.pages import (
    RESULTS_PER_PAGE,
    SEP,
    PageView,
    ResultRow,
    detail_view,
    done_view,
    element_key,
    item_view,
    results_view,
    search_view,
)
from spear_rl.envs.webshop.reward import PurchaseScore, score_purchase

# The spec's success reward for agent tasks (ALFWorld/WebShop/Sokoban style).
SUCCESS_REWARD = 10.0
DEFAULT_MAX_TURNS = 15

SYSTEM_PROMPT = (
    "You are a shopping agent in WebShop, an online store. Find and buy the product that the "
    "instruction asks for. Each turn shows the current page; its parts are separated by [SEP]. "
    "Act with exactly one action: search[your query] when the page has a search box, or "
    "click[element] with an element from the admissible actions (a product id, an option value, "
    "next >, < prev, description, features, back to search, buy now). Click the options the "
    "instruction asks for before you click buy now. Reply with your reasoning in <think>...</think> "
    "and then the action in <action>...</action>."
)

# The price clause of an instruction is dropped from the oracle's query when the whole instruction
# would not fit in one action.
_QUERY_LIMIT = MAX_ACTION_CHARS - len("search[]")


@register_env("webshop")
class WebShopEnv(Env):
    name = "webshop"
    system_prompt = SYSTEM_PROMPT

    def __init__(
        self,
        catalogue_seed: int = 0,
        num_products: int = DEFAULT_NUM_PRODUCTS,
        max_turns: int = DEFAULT_MAX_TURNS,
        dense_score: bool = False,
        shuffle_ids: bool = False,
        catalogue: Catalogue | None = None,
    ) -> None:
        """`catalogue` (a prebuilt store, e.g. a hand-made one in tests) overrides the seed/size."""
        super().__init__()
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"webshop max_turns must be a positive integer, got {max_turns!r}")
        if not isinstance(num_products, int) or num_products < 2:
            raise ValueError(f"webshop num_products must be an integer >= 2, got {num_products!r}")
        if catalogue is None:
            catalogue = build_catalogue(int(catalogue_seed), num_products)
        self.catalogue: Catalogue = catalogue
        self.max_turns = max_turns
        self.dense_score = bool(dense_score)
        self.shuffle_ids = bool(shuffle_ids)
        self._show_ids([p.product_id for p in catalogue.products])
        self.goal: Goal | None = None
        self.state: PageState[int] = PageState()
        self.view: PageView = search_view("")
        self.valid_actions = 0
        self.last_score: PurchaseScore | None = None
        self._oracle_query: str | None = None

    # ---- protocol ---------------------------------------------------------------------------
    def _reset(self, seed: int) -> str:
        self.goal = make_goal(self.catalogue, seed)
        if self.shuffle_ids:
            ids = [p.product_id for p in self.catalogue.products]
            random.Random(f"webshop-ids:{self.catalogue.seed}:{seed}").shuffle(ids)
            self._show_ids(ids)
        self.task = self.goal.instruction
        self.valid_actions, self.last_score, self._oracle_query = 0, None, None
        return self._show(PageState())

    def _step_action(self, action: str) -> StepResult:
        if self.goal is None:
            raise RuntimeError("step() before reset(): call reset(seed) first")
        verdict = check_action(action, self.view)
        if isinstance(verdict, Rejection):
            info = {"valid": False, "tool_call": False, "feedback": verdict.feedback}
            info["webshop_score"] = 0.0
            return StepResult(self.observation, 0.0, False, info)
        self.valid_actions += 1
        state = next_state(
            self.state,
            verdict,
            # check_action accepted a click on a results page only for an id the page shows
            product_named=self._index_by_key.__getitem__,
            option_groups=lambda index: self.catalogue.products[index].options,
        )
        reward, score, done = 0.0, 0.0, False
        if state.kind == "done":
            product = self.catalogue.products[state.product]
            self.last_score = score_purchase(product, self.goal, dict(state.selected))
            score, done = self.last_score.score, True
            state = dataclasses.replace(state, score=score)
            self.won = self.last_score.success
            reward = SUCCESS_REWARD * self.won + (score if self.dense_score else 0.0)
        info = {"webshop_score": score, "page": state.kind}
        if not done and self.valid_actions >= self.max_turns:
            done, info["timeout"] = True, True
        return StepResult(self._show(state), reward, done, info)

    @property
    def admissible_actions(self) -> list[str]:
        return [] if self.done else self.view.admissible_actions()

    @property
    def tokenizer_terms(self) -> tuple[str, ...]:
        """Every product id, as pages show it and as clicks list it (lower case), and the part
        separator (30 per results page: 5 tokens each otherwise)."""
        ids = [p.product_id for p in self.catalogue.products]
        return (SEP.strip(), *ids, *(i.lower() for i in ids))

    def shown_id(self, index: int) -> str:
        """The id that product `index` has on this episode's pages."""
        return self._shown_ids[index]

    def expert_action(self) -> str | None:
        """The oracle: search with the instruction, open the first listed product that satisfies
        the goal (the target, or one that scores 1.0 as well), click the goal's options, buy. Works
        from any page (it walks back when off the path).

        It clicks ids as the page shows them (upper case; matching is case-insensitive, as in
        WebShop), and prefers the top-ranked satisfying product to the hidden target: both make
        its choices visible in the prompt, so that a policy can learn them by imitation."""
        if self.done or self.goal is None:
            return None
        goal, state = self.goal, self.state
        target = self.catalogue.products[goal.target_index]
        if state.kind == "search":
            return f"search[{self._expert_query()}]"
        if state.kind == "results":
            results = self.catalogue.search(state.query)
            start = (state.page_num - 1) * RESULTS_PER_PAGE
            for index in results[start : start + RESULTS_PER_PAGE]:
                if self.satisfies_goal(index):
                    return f"click[{self.shown_id(index)}]"
            if state.query == self._expert_query() and target.index in results:
                target_page = results.index(target.index) // RESULTS_PER_PAGE + 1
                return f"click[{NEXT if target_page > state.page_num else PREV}]"
            return f"click[{BACK}]"
        if state.kind == "item":
            if not self.satisfies_goal(state.product):
                return f"click[{PREV}]"
            selected = dict(state.selected)
            for group, value in goal.options:
                if selected.get(group) != value:
                    return f"click[{element_key(value)}]"
            return f"click[{BUY}]"
        return f"click[{PREV}]"  # detail page

    def satisfies_goal(self, index: int) -> bool:
        """Whether buying product `index` with the goal's options clicked would score 1.0."""
        assert self.goal is not None
        product = self.catalogue.products[index]
        offered = {group: values for group, values in product.options}
        chosen = {g: v for g, v in self.goal.options if v in offered.get(g, ())}
        return score_purchase(product, self.goal, chosen).success

    # ---- internals --------------------------------------------------------------------------
    def _show_ids(self, ids: list[str]) -> None:
        """Product i appears on this episode's pages as ids[i]; clicks map back through the key."""
        self._shown_ids = tuple(ids)
        self._index_by_key = {element_key(i): n for n, i in enumerate(ids)}

    def _expert_query(self) -> str:
        """The instruction, unless the target is not among its results (then its title, then its
        catalogue id, which the search index holds; not with shuffled ids, whose pages show others)."""
        if self._oracle_query is None:
            assert self.goal is not None
            target = self.catalogue.products[self.goal.target_index]
            instruction = self.goal.instruction
            if len(instruction) > _QUERY_LIMIT:
                instruction = instruction.rsplit(", and price lower than", 1)[0][:_QUERY_LIMIT]
            queries = [instruction, target.title[:_QUERY_LIMIT]]
            if not self.shuffle_ids:
                queries.append(target.product_id)
            for query in queries:
                query = " ".join(query.split())
                if target.index in self.catalogue.search(query):
                    break
            self._oracle_query = query
        return self._oracle_query

    def _show(self, state: PageState[int]) -> str:
        self.state = state
        self.view = self._render(state)
        return self.view.text

    def _render(self, state: PageState[int]) -> PageView:
        assert self.goal is not None
        if state.kind == "search":
            return search_view(self.goal.instruction)
        if state.kind == "results":
            results = self.catalogue.search(state.query)
            start = (state.page_num - 1) * RESULTS_PER_PAGE
            rows = [
                ResultRow(self.shown_id(p.index), p.title, p.price_text)
                for p in (
                    self.catalogue.products[i] for i in results[start : start + RESULTS_PER_PAGE]
                )
            ]
            return results_view(state.page_num, len(results), rows)
        product = self.catalogue.products[state.product]
        if state.kind == "item":
            return item_view(
                product.title, product.price_text, product.options, dict(state.selected)
            )
        if state.kind == "detail":
            lines = (
                [product.description] if state.detail == "description" else list(product.features)
            )
            return detail_view(lines)
        return done_view(self.shown_id(product.index), state.score)
