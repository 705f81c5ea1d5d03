"""The WebShop failure funnel: replaying trajectories to see how far each episode got."""

from __future__ import annotations

from tests.envs.test_webshop_env import tiny_catalogue

from spear_rl.envs.webshop.env import WebShopEnv
from spear_rl.experiments.webshop_funnel import (
    STAGES,
    episode_funnel,
    funnel_summary,
    instruction_words,
)
from spear_rl.rollout.sample import Trajectory, Turn


def trajectory(seed: int, actions: list[str | None]) -> Trajectory:
    turns = [Turn("", "", action, 0.0, action is not None) for action in actions]
    return Trajectory(group_id=0, traj_id=0, task_seed=seed, task="", turns=turns)


def oracle_actions(env: WebShopEnv, seed: int) -> list[str]:
    env.reset(seed)
    actions = []
    while not env.done:
        actions.append(env.expert_action())
        env.step(env.format_action(actions[-1]))
    return actions


def test_the_oracle_reaches_every_stage():
    env = WebShopEnv(catalogue=tiny_catalogue())
    row = episode_funnel(env, trajectory(0, oracle_actions(env, 0)))
    assert all(row[stage] for stage in STAGES)
    assert row["query_recall"] == 1.0 and row["score"] == 1.0 and row["invalid_pages"] == []
    assert row["first_pick"] == 0 and row["top_result_good"] is True


def test_a_wrong_purchase_stops_the_funnel_and_invalid_turns_are_placed_by_page():
    env = WebShopEnv(catalogue=tiny_catalogue())
    env.reset(0)  # a chocolate bar goal; buy the mouse instead
    actions = [
        None,
        "click[b0zzzzzzz9]",
        "search[wireless mouse]",
        "click[b0ccccccc3]",
        "click[nowhere]",
        "click[buy now]",
    ]
    row = episode_funnel(env, trajectory(0, actions))
    assert row["searched"] and row["bought"]
    assert not (row["good_product_opened"] or row["options_complete"] or row["won"])
    assert row["score"] is not None and row["score"] < 1.0
    assert row["invalid_pages"] == ["search: no action", "search: rejected", "item: rejected"]
    expected = len(instruction_words(env.goal.instruction) & {"wireless", "mouse"})
    assert row["query_recall"] == expected / len(instruction_words(env.goal.instruction))


def test_an_episode_that_never_acts_reaches_nothing_and_the_summary_averages():
    env = WebShopEnv(catalogue=tiny_catalogue())
    good, idle = trajectory(1, oracle_actions(env, 1)), trajectory(1, [None, None])
    summary = funnel_summary(lambda: WebShopEnv(catalogue=tiny_catalogue()), [good, idle])
    assert summary["episodes"] == 2 and summary["won"] == 0.5 and summary["searched"] == 0.5
    assert summary["first_query_recall"] == 1.0  # only episodes that searched count
    assert summary["invalid_turns_by_page"] == {"search: no action": 2}


def test_instruction_words_drop_the_price_clause():
    words = instruction_words("i need a usb c mouse, and price lower than 30.00 dollars")
    assert words == {"i", "need", "a", "usb", "c", "mouse"}


def test_the_first_pick_is_ranked_on_its_page_links_are_skipped_and_unknown_ids_are_unlisted():
    env = WebShopEnv(catalogue=tiny_catalogue())
    env.reset(0)
    env.step(env.format_action("search[dark chocolate bar]"))
    listed = [
        env.catalogue.products[i].product_id for i in env.catalogue.search("dark chocolate bar")
    ]
    assert len(listed) >= 2
    second = listed[1].lower()
    row = episode_funnel(env, trajectory(0, ["search[dark chocolate bar]", f"click[{second}]"]))
    assert row["first_pick"] == 1
    row = episode_funnel(
        env,
        trajectory(
            0,
            [
                "search[dark chocolate bar]",
                "click[back to search]",
                "search[chocolate]",
                "click[b0nowhere00]",
                f"click[{second}]",
            ],
        ),
    )
    assert row["first_pick"] == "unlisted"
    summary = funnel_summary(
        lambda: WebShopEnv(catalogue=tiny_catalogue()),
        [
            trajectory(0, ["search[dark chocolate bar]", f"click[{second}]"]),
            trajectory(0, ["search[dark chocolate bar]", f"click[{listed[0]}]"]),
            trajectory(0, [None]),
        ],
    )
    assert summary["first_pick_top"] == 0.5 and summary["first_pick_unlisted"] == 0.0
    top_is_good = env.satisfies_goal(env.catalogue.search("dark chocolate bar")[0])
    assert summary["top_result_good"] == float(top_is_good)  # both searches are the same


def test_with_shuffled_ids_the_first_pick_is_ranked_by_the_id_the_page_shows():
    env = WebShopEnv(catalogue=tiny_catalogue(), shuffle_ids=True)
    env.reset(0)
    env.step(env.format_action("search[dark chocolate bar]"))
    ranked = env.catalogue.search("dark chocolate bar")
    shown = [env.shown_id(i).lower() for i in ranked]
    catalogue_ids = [env.catalogue.products[i].product_id.lower() for i in ranked]
    row = episode_funnel(env, trajectory(0, ["search[dark chocolate bar]", f"click[{shown[1]}]"]))
    assert row["first_pick"] == 1
    # recalling the top product's catalogue id is a click on whatever now shows that id (or none)
    recalled_top, recalled_second = catalogue_ids[0], catalogue_ids[1]
    assert recalled_top == shown[1] and recalled_second not in shown  # this seed's permutation
    row = episode_funnel(
        env, trajectory(0, ["search[dark chocolate bar]", f"click[{recalled_top}]"])
    )
    assert row["first_pick"] == 1
    row = episode_funnel(
        env, trajectory(0, ["search[dark chocolate bar]", f"click[{recalled_second}]"])
    )
    assert row["first_pick"] == "unlisted"
