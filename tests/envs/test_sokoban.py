"""Sokoban: generated rooms are solvable and the expert wins them, the reward rules, determinism,
hostile model output, and a random policy that rarely wins."""

from __future__ import annotations

import random
import statistics

import pytest

from spear_rl.envs.base import EVAL_SEED_OFFSET, make_env
from spear_rl.envs.sokoban import SokobanEnv, make_sokoban
from spear_rl.envs.sokoban_gen import apply_move, generate_puzzle, parse_room, render, solve


def respond(action: str) -> str:
    return f"<think></think><action>{action}</action>"


def play_expert(env: SokobanEnv) -> tuple[float, int, int, int]:
    """Follow expert_action to the end; return (summed reward, moves, pushes on, pushes off)."""
    total, moves, pushed_on, pushed_off = 0.0, 0, 0, 0
    for _ in range(env.max_steps):
        if env.done:
            break
        action = env.expert_action()
        assert action is not None, f"no expert move from\n{env.observation}"
        before = env.state.boxes_on_targets
        result = env.step(respond(action))
        assert result.info["valid"]
        after = env.state.boxes_on_targets
        pushed_on += max(after - before, 0)
        pushed_off += max(before - after, 0)
        total += result.reward
        moves += 1
    assert env.done, "the expert did not finish within max_steps"
    return total, moves, pushed_on, pushed_off


# ---- the expert plan wins every generated room ----------------------------------------------
@pytest.mark.parametrize(
    "seeds", [range(200), range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 30)], ids=["train", "eval"]
)
def test_expert_wins_every_generated_room_with_the_hand_formula_reward(seeds):
    env = SokobanEnv()
    for seed in seeds:
        env.reset(seed)
        optimal_moves = len(solve(env.state))
        total, moves, pushed_on, pushed_off = play_expert(env)
        assert env.won, f"seed {seed} not won"
        assert moves == optimal_moves <= env.max_steps
        assert total == pytest.approx(10 + pushed_on - pushed_off - 0.1 * moves)
        assert env.expert_action() is None  # done


def test_expert_replans_after_a_detour():
    env = make_sokoban(7)
    state = env.state
    # a move the expert would not make, that pushes no box (so no deadlock can follow)
    detour = next(
        d
        for d in env.admissible_actions
        if d != env.expert_action() and apply_move(state, d).boxes == state.boxes
    )
    env.step(respond(detour))
    remaining = len(solve(env.state))
    # every expert move shortens the optimal plan from the new state by exactly one
    for moves_left in range(remaining - 1, -1, -1):
        env.step(respond(env.expert_action()))
        assert len(solve(env.state)) == moves_left
    assert env.won and env.moves == 1 + remaining


def test_generated_rooms_with_two_boxes_are_solvable():
    env = SokobanEnv(size=7, num_boxes=2, max_steps=60)
    for seed in range(5):
        env.reset(seed)
        assert len(env.state.boxes) == 2 and len(env.state.targets) == 2
        play_expert(env)
        assert env.won


# ---- solver on hand-built rooms ---------------------------------------------------------------
def test_solver_finds_hand_computed_optimal_plans():
    corridor = parse_room("#######\n#P_X_O#\n#######")
    assert solve(corridor) == ["right", "right", "right"]
    # box needs one push left and one push up; either order costs 5 moves
    square = parse_room("#####\n#O__#\n#_X_#\n#__P#\n#####")
    plan = solve(square)
    assert len(plan) == 5
    state = square
    for direction in plan:
        state = apply_move(state, direction)
    assert state.solved


def test_deadlocked_room_has_no_plan_and_no_expert_move():
    cornered = parse_room("#####\n#X_O#\n#__P#\n#####")
    assert solve(cornered) is None
    env = SokobanEnv()
    env.reset_to_state(cornered)
    assert env.expert_action() is None


def test_render_and_parse_room_are_inverse():
    for seed in range(20):
        state = generate_puzzle(seed).state
        assert parse_room(render(state)) == state
    text = "#####\n#S*_#\n#_X_#\n#####"
    assert render(parse_room(text)) == text


# ---- rewards ----------------------------------------------------------------------------------
TWO_BOX_ROOM = """
#######
#P_XO_#
#__X_O#
#######
"""


def test_rewards_for_invalid_action_wall_bump_push_on_and_push_off():
    env = SokobanEnv()
    start = env.reset_to_state(parse_room(TWO_BOX_ROOM))
    expected = [  # (response, reward, valid, moved)
        (respond("jump"), -0.1, False, None),  # an invalid reply spends the turn too
        (respond("up"), -0.1, True, False),  # wall bump: a valid move that costs the step
        (respond("right"), -0.1, True, True),
        (respond("right"), -0.1 + 1.0, True, True),  # box onto the target
        (respond("right"), -0.1 - 1.0, True, True),  # and off it again
    ]
    for response, reward, valid, moved in expected:
        result = env.step(response)
        assert result.reward == pytest.approx(reward)
        assert result.info["valid"] is valid and result.info["tool_call"] is valid
        assert result.info.get("moved") is moved
        assert not result.done and not env.won
    assert env.moves == 4
    assert start == TWO_BOX_ROOM.strip()
    assert env.observation == "#######\n#___SX#\n#__X_O#\n#######"


def test_a_box_is_not_pushed_into_another_box():
    env = SokobanEnv()
    env.reset_to_state(parse_room("########\n#PXX_OO#\n########"))
    result = env.step(respond("right"))
    assert result.info["valid"] and not result.info["moved"]
    assert result.reward == pytest.approx(-0.1)
    assert env.observation == "########\n#PXX_OO#\n########"


def test_solving_pays_the_success_reward_and_ends_the_episode():
    env = SokobanEnv()
    env.reset_to_state(parse_room("######\n#P_XO#\n######"))
    first, last = env.step(respond("right")), env.step(respond("Right"))
    assert first.reward == pytest.approx(-0.1) and not first.done
    assert last.reward == pytest.approx(-0.1 + 1.0 + 10.0)
    assert last.done and last.info["won"] and env.won
    assert last.observation == "######\n#__P*#\n######"


def test_episode_ends_after_max_steps_valid_moves():
    env = SokobanEnv(max_steps=3)
    env.reset_to_state(parse_room("######\n#P_XO#\n######"))
    assert not env.step(respond("up")).done
    assert not env.step("no tags at all").done  # invalid turns do not count
    assert not env.step(respond("down")).done
    result = env.step(respond("left"))
    assert result.done and not env.won and env.moves == 3


# ---- determinism ------------------------------------------------------------------------------
def test_same_seed_same_room_and_different_seeds_different_rooms():
    first, second = SokobanEnv(), SokobanEnv()
    first.reset(3)  # a previous episode must not influence the next room
    for seed in (0, 11, EVAL_SEED_OFFSET + 5):
        assert first.reset(seed) == second.reset(seed)
        assert first.state == second.state
    rooms = {make_sokoban(seed).observation for seed in range(50)}
    assert len(rooms) >= 45


# ---- hostile model output ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "response",
    [
        "up",
        "",
        "x" * 100_000,
        respond("up") + "x" * 100_000,
        "<action>\udcff</action>",
        "\udcff",
        "<action>\ufffd</action>",
        "<action>jump</action>",
        "<action></action>",
        "<action>up</action><action>down</action>",
        "<action>up down</action>",
        None,
    ],
    ids=lambda r: repr(r)[:20],
)
def test_malformed_responses_are_invalid_turns_that_change_nothing(response):
    env = make_sokoban(0)
    state, observation = env.state, env.observation
    result = env.step(response)
    assert result.info["valid"] is False and result.info["tool_call"] is False
    assert result.reward == pytest.approx(-0.1) and not result.done  # never a free no-op
    assert result.observation == observation and env.observation == observation
    assert env.state == state and env.moves == 0
    assert result.info["feedback"]


def test_actions_ignore_case_and_surrounding_whitespace():
    env = SokobanEnv()
    env.reset_to_state(parse_room("######\n#P__O#\n#_X__#\n######"))
    result = env.step("<think>go</think><action>  RIGHT \n</action>")
    assert result.info["valid"] and env.state.player == (1, 2)


# ---- difficulty -------------------------------------------------------------------------------
def test_random_policy_rarely_wins_and_optimal_plans_are_short():
    env = SokobanEnv()
    wins, plan_lengths = 0, []
    for seed in range(100):
        env.reset(seed)
        plan_lengths.append(len(solve(env.state)))
        policy = random.Random(seed)
        for _ in range(env.max_steps):
            env.step(respond(policy.choice(env.admissible_actions)))
            if env.done:
                break
        assert env.done, "max_steps valid moves must end the episode"
        wins += env.won
    print(
        f"random policy success: {wins}/100; median optimal plan {statistics.median(plan_lengths)}"
    )
    assert wins < 25
    assert 3 <= statistics.median(plan_lengths) <= 12


# ---- construction -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 4},
        {"size": "6"},
        {"size": 100},
        {"num_boxes": 0},
        {"num_boxes": 5},
        {"gen_steps": 0},
        {"max_steps": 0},
        {"max_steps": 2.5},
        {"min_solution_moves": 0},
    ],
)
def test_bad_settings_raise_value_errors_naming_the_setting(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SokobanEnv(**kwargs)


def test_registered_env_has_the_protocol_pieces():
    env = make_env("sokoban", size=7)
    assert isinstance(env, SokobanEnv) and env.size == 7
    observation = env.reset(1)
    assert observation == env.anchor == render(env.state)
    assert env.admissible_actions == ["up", "down", "left", "right"]
    assert "<action>up|down|left|right</action>" in env.system_prompt
    assert env.task and "\n" not in env.task
    with pytest.raises(TypeError, match="seed"):
        env.reset("one")
    with pytest.raises(ValueError, match="solved"):
        env.reset_to_state(parse_room("#####\n#P*_#\n#####"))
