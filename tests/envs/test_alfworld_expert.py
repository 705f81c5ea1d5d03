"""The searching ALFWorld expert's rules, on hand-written plans (no engine needed)."""

from __future__ import annotations

from spear_rl.envs.alfworld.expert import SearchingExpert

ROOM = ["go to cabinet 1", "go to cabinet 2", "go to fridge 1", "go to sinkbasin 1", "look"]
FETCH_MUG = ["go to cabinet 2", "open cabinet 2", "take mug 1 from cabinet 2", "go to sinkbasin 1"]


def started(
    intro: str = "You see a cabinet 1, a cabinet 2, a fridge 1 and a sinkbasin 1.",
) -> SearchingExpert:
    expert = SearchingExpert()
    expert.start(intro, ROOM)
    return expert


def test_searches_in_room_order_for_an_unseen_object_and_opens_what_is_closed():
    expert = started()
    assert expert.action(FETCH_MUG) == "go to cabinet 1"  # not the planner's cabinet 2
    expert.observe("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed.")
    assert expert.action(FETCH_MUG) == "open cabinet 1"
    expert.observe("open cabinet 1", "You open the cabinet 1. In it, you see a cup 2.")
    assert expert.action(FETCH_MUG) == "go to cabinet 2"


def test_follows_the_planner_once_the_object_was_seen_anywhere():
    expert = started()
    expert.observe("go to cabinet 2", "You arrive at cabinet 2. On the cabinet 2, you see a mug 1.")
    expert.observe("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed.")
    assert expert.action(FETCH_MUG) == "go to cabinet 2"  # remembered, even from elsewhere
    assert expert.has_seen("mug 1") and not expert.has_seen("mug 11")


def test_plans_that_fetch_nothing_are_followed():
    expert = started()
    for plan in (["go to sinkbasin 1", "clean mug 1 with sinkbasin 1"], ["move mug 1 to fridge 1"]):
        assert expert.action(plan) == plan[0]
    assert expert.action([]) is None


def test_search_wraps_around_and_falls_back_to_the_planner_after_the_whole_room():
    expert = started()
    expert.observe("go to sinkbasin 1", "You arrive at sinkbasin 1. On it, you see nothing.")
    assert expert.action(["go to cabinet 2", "use desklamp 1"]) == "go to cabinet 1"
    for where in ("cabinet 1", "cabinet 2", "fridge 1"):
        expert.observe(f"go to {where}", f"You arrive at {where}. The {where} is closed.")
        expert.observe(f"close {where}", "")  # never opened: its contents stay unseen
    assert expert.closed_here
    expert.observe("open fridge 1", "You open the fridge 1. In it, you see nothing.")
    assert expert.action(FETCH_MUG) == FETCH_MUG[0]  # everything visited: trust the planner
