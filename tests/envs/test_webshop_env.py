"""The generated WebShop env: oracle, random clicker, hostile actions, determinism, page snapshots."""

from __future__ import annotations

import random

import pytest

from spear_rl.envs.base import EVAL_SEED_OFFSET, INVALID_ACTION_FEEDBACK, make_env
from spear_rl.envs.webshop.catalogue import Catalogue, Product
from spear_rl.envs.webshop.env import SUCCESS_REWARD, WebShopEnv
from spear_rl.envs.webshop.pages import ResultRow, detail_view, item_view, results_view
from spear_rl.envs.webshop.search import tokenize


def act(env, action: str):
    return env.step(env.format_action(action))


def tiny_catalogue() -> Catalogue:
    bar_options = (("flavor", ("sea salt", "almond")), ("count", ("6 pack", "12 pack")))
    products = (
        Product(0, "B0AAAAAAA1", "Acme Classic Dark Chocolate Bar, Gluten Free",
                "dark chocolate bar", "grocery", "snacks", ("gluten free", "non gmo"),
                bar_options, 12.5, "A rich bar.", ("Gluten Free", "Non Gmo")),
        Product(1, "B0BBBBBBB2", "Zenith Premium Dark Chocolate Bar, Low Sugar",
                "dark chocolate bar", "grocery", "snacks", ("low sugar", "non gmo"),
                (("flavor", ("mint", "almond")),), 8.0, "A light bar.", ("Low Sugar", "Non Gmo")),
        Product(2, "B0CCCCCCC3", "Orbit Wireless Mouse, Usb C", "wireless mouse", "electronics",
                "computer accessories", ("usb c", "compact size"),
                (("color", ("black", "white")),), 19.99, "A small mouse.", ("Usb C", "Compact Size")),
    )  # fmt: skip
    return Catalogue(seed=0, products=products, train_targets=(0, 1), eval_targets=(2,))


@pytest.fixture(scope="module")
def env():
    return make_env("webshop")


def run_oracle(env, seed: int) -> tuple[float, bool, int]:
    env.reset(seed)
    steps = 0
    while not env.done:
        result = act(env, env.expert_action())
        assert result.info["valid"], result.info
        steps += 1
    return env.last_score.score, env.won, steps


def test_oracle_wins_every_one_of_500_instructions(env):
    seeds = list(range(250)) + [EVAL_SEED_OFFSET + i for i in range(250)]
    for seed in seeds:
        score, won, steps = run_oracle(env, seed)
        assert (score, won) == (1.0, True), (seed, env.task)
        assert steps <= env.max_turns
    assert env.expert_action() is None  # finished episode


def buy_with_goal_options(env, seed: int, query: str, product_id: str) -> float:
    """The score of buying `product_id` (from `query`'s first results page) with every goal option
    it offers clicked, played through the env's own actions."""
    env.reset(seed)
    act(env, f"search[{query}]")
    act(env, f"click[{product_id}]")
    offered = set(env.admissible_actions)
    for _, value in env.goal.options:
        if f"click[{value}]" in offered:
            act(env, f"click[{value}]")
    act(env, "click[buy now]")
    return env.last_score.score


def test_oracle_opens_the_first_listed_product_that_satisfies_the_goal(env):
    probe = make_env("webshop")
    not_the_target = 0
    for seed in range(12):
        env.reset(seed)
        act(env, env.expert_action())  # the search
        query = env.state.query
        listed = [a[len("click[") : -1] for a in env.admissible_actions if a.startswith("click[b0")]
        choice = env.expert_action()[len("click[") : -1]
        # the id as the page shows it (upper case), so that a policy can copy it from the page
        assert choice in env.observation and choice.lower() in listed
        rank = listed.index(choice.lower())
        assert buy_with_goal_options(probe, seed, query, choice) == 1.0
        for earlier in listed[:rank]:
            assert buy_with_goal_options(probe, seed, query, earlier) < 1.0, (seed, earlier)
        target = env.catalogue.products[env.goal.target_index].product_id
        not_the_target += choice != target
    assert not_the_target > 0  # the preference for the top-ranked product is exercised


def test_oracle_recovers_from_any_page(env):
    env.reset(11)
    act(env, "search[wireless mouse]")
    act(env, env.admissible_actions[-1])  # some item
    act(env, "click[description]")
    while not env.done:
        assert act(env, env.expert_action()).info["valid"]
    assert env.won


def test_random_clicker_scores_near_zero(env):
    """200 episodes of uniformly random admissible actions; searches use 3 random catalogue words."""
    rng = random.Random(0)
    vocabulary = sorted({w for p in env.catalogue.products for w in tokenize(p.title)})
    scores, wins = [], 0
    for episode in range(200):
        env.reset(episode)
        while not env.done:
            action = rng.choice(env.admissible_actions)
            if action.startswith("search["):
                action = f"search[{' '.join(rng.sample(vocabulary, 3))}]"
            act(env, action)
        scores.append(env.last_score.score if env.last_score else 0.0)
        wins += env.won
    mean_score = sum(scores) / len(scores)
    print(
        f"random clicker over 200 episodes: mean score {mean_score:.3f}, success {wins / 200:.3f}"
    )
    assert mean_score < 0.05 and wins <= 2


def test_rewards_and_info_at_purchase():
    env = WebShopEnv(catalogue=tiny_catalogue())
    env.reset(0)  # goal: gluten free, non gmo; sea salt, 6 pack; price < 40
    for action in ("search[dark chocolate bar]", "click[b0aaaaaaa1]", "click[12 pack]"):
        result = act(env, action)
        assert (result.reward, result.done, result.info["webshop_score"]) == (0.0, False, 0.0)
    result = act(env, "click[buy now]")
    # (2 attributes + 0 options... sea salt not clicked, 12 pack wrong + price) / 5
    assert result.done and result.info["webshop_score"] == pytest.approx(3 / 5)
    assert result.reward == 0.0 and not result.info["won"]

    dense = WebShopEnv(catalogue=tiny_catalogue(), dense_score=True)
    dense.reset(0)
    for action in ("search[dark chocolate bar]", "click[b0aaaaaaa1]", "click[sea salt]"):
        act(dense, action)
    assert act(dense, "click[buy now]").reward == pytest.approx(4 / 5)
    dense.reset(0)
    while not dense.done:
        result = act(dense, dense.expert_action())
    assert result.info["won"] and result.reward == SUCCESS_REWARD + 1.0


def test_episode_ends_after_max_turns_valid_actions():
    env = WebShopEnv(catalogue=tiny_catalogue(), max_turns=3)
    env.reset(0)
    assert not act(env, "search[mouse]").done
    assert not act(env, "click[nonsense]").done  # invalid: does not count
    assert not act(env, "click[b0ccccccc3]").done
    result = act(env, "click[description]")
    assert result.done and result.info["timeout"] and result.reward == 0.0 and not env.won
    assert env.admissible_actions == []


HOSTILE = [
    "click[not a button]",
    "click[b0aaaaaaa1",
    "click b0aaaaaaa1",
    "search[]",
    "search[?!/ ...]",
    "buy[now]",
    "click[[b0aaaaaaa1]]",
    "click[b0aaaaaaa1] click[buy now]",
    "search[" + "chocolate " * 19 + "]",
]


@pytest.mark.parametrize("action", HOSTILE)
def test_hostile_actions_are_invalid_turns(action):
    env = WebShopEnv(catalogue=tiny_catalogue())
    env.reset(0)
    act(env, "search[dark chocolate bar]")
    before = (env.observation, env.state, env.valid_actions)
    result = env._step_action(action)  # the parsed action, as step() would pass it
    assert result.info["valid"] is False and result.info["tool_call"] is False
    assert result.info["feedback"].startswith("Invalid action")
    assert result.observation == before[0] and not result.done and result.reward == 0.0
    assert (env.observation, env.state, env.valid_actions) == before


def test_hostile_responses_through_step():
    env = WebShopEnv(catalogue=tiny_catalogue())
    obs = env.reset(0)
    huge = "<action>search[" + "a" * 100_000 + "]</action>"
    for response in (huge, "no tags at all", "<action>\udcff</action>", "", "<action></action>"):
        result = env.step(response)
        assert result.info["valid"] is False and result.observation == obs
        assert result.info["feedback"] == INVALID_ACTION_FEEDBACK
    result = env.step("<think>hmm</think><action>search[" + "a" * 190 + "]</action>")
    assert result.info["valid"]  # long but within limits: a search with no results
    assert "Total results: 0" in result.observation
    result = act(env, "search[chocolate]")
    assert result.info["valid"] is False and "no search box" in result.info["feedback"]
    assert "not clickable" in act(env, "click[buy now]").info["feedback"]


def test_feedback_lists_the_clickable_elements():
    env = WebShopEnv(catalogue=tiny_catalogue())
    env.reset(0)
    act(env, "search[mouse]")
    feedback = act(env, "click[b0aaaaaaa1]").info["feedback"]
    assert feedback == (
        "Invalid action: 'b0aaaaaaa1' is not clickable on this page; "
        "clickable: back to search, b0ccccccc3."
    )


def test_page_snapshots_on_a_tiny_catalogue():
    env = WebShopEnv(catalogue=tiny_catalogue())
    assert env.reset(0) == (
        "WebShop [SEP] Instruction: [SEP] i'm looking for a dark chocolate bar that is gluten free "
        "and non gmo in sea salt flavor and in a 6 pack, and price lower than 40.00 dollars "
        "[SEP] Search"
    )
    assert env.admissible_actions == ["search[<your query>]"]
    assert act(env, "search[dark chocolate bar]").observation == (
        "Back to Search [SEP] Page 1 (Total results: 2) [SEP] B0BBBBBBB2 [SEP] Zenith Premium "
        "Dark Chocolate Bar, Low Sugar [SEP] $8.00 [SEP] B0AAAAAAA1 [SEP] Acme Classic Dark "
        "Chocolate Bar, Gluten Free [SEP] $12.50"
    )
    assert env.admissible_actions == [
        "click[back to search]",
        "click[b0bbbbbbb2]",
        "click[b0aaaaaaa1]",
    ]
    item = (
        "Back to Search [SEP] < Prev [SEP] flavor [SEP] sea salt [SEP] almond [SEP] count [SEP] "
        "6 pack [SEP] 12 pack [SEP] {}Acme Classic Dark Chocolate Bar, Gluten Free [SEP] "
        "Price: $12.50 [SEP] Description [SEP] Features [SEP] Buy Now"
    )
    assert act(env, "click[B0AAAAAAA1]").observation == item.format("")
    assert env.admissible_actions == [
        "click[back to search]", "click[< prev]", "click[sea salt]", "click[almond]",
        "click[6 pack]", "click[12 pack]", "click[description]", "click[features]", "click[buy now]",
    ]  # fmt: skip
    selected = item.format("Selected options: flavor: sea salt, count: 6 pack [SEP] ")
    act(env, "click[6 pack]")
    assert act(env, "click[Sea  Salt]").observation == selected
    assert act(env, "click[features]").observation == (
        "Back to Search [SEP] < Prev [SEP] Gluten Free [SEP] Non Gmo"
    )
    assert act(env, "click[< prev]").observation == selected
    assert (
        act(env, "click[description]").observation
        == "Back to Search [SEP] < Prev [SEP] A rich bar."
    )
    act(env, "click[< prev]")
    result = act(env, "click[buy now]")
    assert result.observation == (
        "Thank you for shopping with us! [SEP] Purchased: B0AAAAAAA1 [SEP] "
        "Your score (min 0.0, max 1.0) [SEP] 1.00"
    )
    assert result.reward == SUCCESS_REWARD and result.info["won"]


def test_renderer_snapshots_with_paging():
    rows = [ResultRow("B0X", "A Title", "$1.00"), ResultRow("B0Y", "B Title", "$2.50")]
    middle = results_view(2, 35, rows)
    assert middle.text == (
        "Back to Search [SEP] Page 2 (Total results: 35) [SEP] < Prev [SEP] Next > [SEP] B0X "
        "[SEP] A Title [SEP] $1.00 [SEP] B0Y [SEP] B Title [SEP] $2.50"
    )
    assert middle.clickables == ("back to search", "< prev", "next >", "b0x", "b0y")
    last = results_view(4, 35, rows[:1])
    assert last.clickables == ("back to search", "< prev", "b0x")
    assert results_view(1, 0, []).text == "Back to Search [SEP] Page 1 (Total results: 0)"
    view = item_view("T", "$3.00", [("size", ["s", "m"])], {"size": "m"})
    assert view.text == (
        "Back to Search [SEP] < Prev [SEP] size [SEP] s [SEP] m [SEP] Selected options: size: m "
        "[SEP] T [SEP] Price: $3.00 [SEP] Description [SEP] Features [SEP] Buy Now"
    )
    assert detail_view(["x", "y"]).admissible_actions() == [
        "click[back to search]",
        "click[< prev]",
    ]


def test_paging_through_results(env):
    env.reset(5)
    act(env, "search[black]")
    first = env.observation
    assert "Page 1 (Total results: 50)" in first and "click[< prev]" not in env.admissible_actions
    for page in range(2, 6):
        assert f"Page {page} (Total results: 50)" in act(env, "click[next >]").observation
    assert "click[next >]" not in env.admissible_actions
    for _ in range(4):
        act(env, "click[< prev]")
    assert env.observation == first


def test_observation_is_a_function_of_page_state(env):
    env.reset(3)
    act(env, "search[gluten free green tea]")
    product = env.admissible_actions[2]
    direct = act(env, product).observation
    act(env, "click[features]")
    act(env, "click[< prev]")
    assert env.observation == direct
    act(env, "click[back to search]")
    act(env, "search[gluten   free green TEA]")
    assert act(env, product).observation == direct


def test_determinism_across_env_instances():
    a, b = make_env("webshop"), make_env("webshop")
    for seed in (0, 17, EVAL_SEED_OFFSET + 3):
        assert a.reset(seed) == b.reset(seed) and a.task == b.task
        while not a.done:
            action = a.expert_action()
            assert action == b.expert_action()
            ra, rb = act(a, action), act(b, action)
            assert (ra.observation, ra.reward, ra.done) == (rb.observation, rb.reward, rb.done)
            assert a.admissible_actions == b.admissible_actions


def test_constructor_validates_kwargs():
    with pytest.raises(ValueError, match="max_turns"):
        WebShopEnv(max_turns=0)
    with pytest.raises(ValueError, match="num_products"):
        WebShopEnv(num_products=1)
    with pytest.raises(RuntimeError, match="reset"):
        WebShopEnv(catalogue=tiny_catalogue())._step_action("search[x]")


def test_missing_rank_bm25_is_a_clear_error(monkeypatch):
    import builtins

    from spear_rl.envs.webshop import search

    real_import = builtins.__import__

    def no_bm25(name, *args, **kwargs):
        if name == "rank_bm25":
            raise ImportError("No module named 'rank_bm25'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bm25)
    with pytest.raises(search.MissingDependencyError, match=r"spear-rl\[webshop\]"):
        search.SearchIndex(["a b c"])


def test_shuffled_ids_change_per_episode_and_the_oracle_still_wins():
    plain, shuffled = make_env("webshop"), make_env("webshop", shuffle_ids=True)
    seeds = list(range(100)) + [EVAL_SEED_OFFSET + i for i in range(100)]
    for seed in seeds:
        score, won, _ = run_oracle(shuffled, seed)
        assert (score, won) == (1.0, True), (seed, shuffled.task)
    plain.reset(5)
    shuffled.reset(5)
    assert plain.task == shuffled.task  # same goal, same products; only the ids differ
    every = range(len(plain.catalogue.products))
    assert sorted(map(shuffled.shown_id, every)) == sorted(map(plain.shown_id, every))
    first = [shuffled.shown_id(i) for i in range(20)]
    assert first != [plain.shown_id(i) for i in range(20)]
    shuffled.reset(6)
    assert first != [shuffled.shown_id(i) for i in range(20)]
    shuffled.reset(5)
    assert first == [shuffled.shown_id(i) for i in range(20)]  # a pure function of the task seed


def test_shuffled_ids_a_recalled_catalogue_id_buys_the_product_the_page_names():
    env = make_env("webshop", shuffle_ids=True)
    env.reset(3)
    result = act(env, f"search[{env.task}]")
    index = env.catalogue.search(env.state.query)[0]
    real_id, shown_id = env.catalogue.products[index].product_id, env.shown_id(index)
    assert shown_id in result.observation and real_id not in result.observation
    assert not act(env, f"click[{real_id}]").info["valid"]
    act(env, f"click[{shown_id}]")
    assert env.state.kind == "item" and env.state.product == index
