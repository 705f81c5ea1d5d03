"""ALFWorld on the real engine: generated tasks, expert plans that win, invalid turns, timeouts.

These tests need the `alfworld` extra (CI installs it) and fail, not skip, without it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spear_rl.envs.alfworld import (
    TASK_TYPES,
    WIN_REWARD,
    AlfWorldEnv,
    generate_task,
    write_games,
)
from spear_rl.envs.alfworld.engine import AlfWorldEngine
from spear_rl.envs.base import EVAL_SEED_OFFSET, EnvTimeoutError, make_env

SRC = str(Path(__file__).resolve().parents[2] / "src")

# ALFWorld's phrasings, written out by hand (not taken from the generator).
GOAL_PATTERNS = {
    "pick_and_place_simple": [r"put a (\w+) in (\w+)\.", r"put some (\w+) on (\w+)\."],
    "look_at_obj_in_light": [
        r"look at (\w+) under the (desklamp|floorlamp)\.",
        r"examine the (\w+) with the (desklamp|floorlamp)\.",
    ],
    "pick_clean_then_place_in_recep": [
        r"put a clean (\w+) in (\w+)\.",
        r"clean some (\w+) and put it in (\w+)\.",
    ],
    "pick_heat_then_place_in_recep": [
        r"put a hot (\w+) in (\w+)\.",
        r"heat some (\w+) and put it in (\w+)\.",
    ],
    "pick_cool_then_place_in_recep": [
        r"put a cool (\w+) in (\w+)\.",
        r"cool some (\w+) and put it in (\w+)\.",
    ],
    "pick_two_obj_and_place": [
        r"put two (\w+) in (\w+)\.",
        r"find two (\w+) and put them in (\w+)\.",
    ],
}
# ALFRED's object abilities (constants.VAL_ACTION_OBJECTS), lower-cased by hand.
HEATABLE = {"apple", "bread", "cup", "egg", "mug", "plate", "potato", "tomato"}
COOLABLE = HEATABLE | {"bowl", "lettuce", "pan", "pot", "winebottle"}
CLEANABLE = {
    "apple", "bowl", "butterknife", "cloth", "cup", "dishsponge", "egg", "fork", "kettle",
    "knife", "ladle", "lettuce", "mug", "pan", "plate", "pot", "potato", "soapbar", "spatula",
    "spoon", "tomato",
}  # fmt: skip
APPLIANCE = {
    "pick_clean_then_place_in_recep": "sinkbasin",
    "pick_heat_then_place_in_recep": "microwave",
    "pick_cool_then_place_in_recep": "fridge",
}


def act(action: str) -> str:
    return f"<think>next step</think><action>{action}</action>"


def play_expert(env: AlfWorldEnv, seed: int) -> tuple[int, float]:
    """Follow the engine's expert plan from reset; returns (steps, last reward)."""
    env.reset(seed)
    assert not env.won
    steps, reward = 0, 0.0
    while not env.done:
        action = env.expert_action()
        assert action is not None and action in env.admissible_actions, (seed, action)
        result = env.step(act(action))
        assert result.info["valid"] and result.info["tool_call"]
        steps, reward = steps + 1, result.reward
    return steps, reward


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = AlfWorldEnv(cache_dir=tmp_path_factory.mktemp("alfworld-cache"))
    yield env
    env.close()


@pytest.fixture(autouse=True)
def no_official_games(monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)


# ---- generation ------------------------------------------------------------------------------
def test_task_type_draw_is_uniform_and_deterministic():
    types = [generate_task(seed)["task_type"] for seed in range(600)]
    counts = collections.Counter(types)
    assert set(counts) == set(TASK_TYPES)
    # 600 uniform draws over 6 types: each count ~ Binomial(600, 1/6), sd ~9.1
    assert all(60 <= c <= 140 for c in counts.values()), counts
    assert generate_task(7) == generate_task(7)
    assert generate_task(7)["pddl_problem"] != generate_task(8)["pddl_problem"]


def test_generation_does_not_depend_on_hash_seed():
    code = textwrap.dedent(
        """
        import hashlib
        from spear_rl.envs.alfworld import generate_task
        text = "".join(generate_task(s)["pddl_problem"] for s in range(40))
        print(hashlib.sha256(text.encode()).hexdigest())
        """
    )
    here = "".join(generate_task(s)["pddl_problem"] for s in range(40))
    environ = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == hashlib.sha256(here.encode()).hexdigest()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_goal_text_and_objects_fit_each_task_type(task_type):
    phrasings_seen = set()
    for seed in range(25):
        task = generate_task(seed, task_type)
        assert task["task_type"] == task_type
        matches = [re.fullmatch(p, task["goal"]) for p in GOAL_PATTERNS[task_type]]
        assert any(matches), task["goal"]
        which = next(i for i, m in enumerate(matches) if m)
        phrasings_seen.add(which)
        obj, second = matches[which].groups()
        assert obj == task["object_type"]
        if task_type == "look_at_obj_in_light":
            assert second == task["toggle_type"] and task["receptacle_type"] is None
        else:
            assert second == task["receptacle_type"] and task["toggle_type"] is None
        if task_type in APPLIANCE:
            assert second != APPLIANCE[task_type]
            # the appliance is in the room
            assert f"{APPLIANCE[task_type]}type - rtype" in task["pddl_problem"].lower()
        if task_type == "pick_heat_then_place_in_recep":
            assert obj in HEATABLE
        if task_type == "pick_cool_then_place_in_recep":
            assert obj in COOLABLE
        if task_type == "pick_clean_then_place_in_recep":
            assert obj in CLEANABLE
    assert phrasings_seen == {0, 1}


def test_task_type_list_and_bad_arguments():
    drawn = {
        generate_task(s, ["look_at_obj_in_light", "pick_two_obj_and_place"])["task_type"]
        for s in range(30)
    }
    assert drawn == {"look_at_obj_in_light", "pick_two_obj_and_place"}
    with pytest.raises(ValueError, match="Did you mean 'pick_and_place_simple'"):
        generate_task(0, "pick_and_place_simpel")
    with pytest.raises(ValueError, match="num_receptacles"):
        generate_task(0, num_receptacles=0)
    with pytest.raises(ValueError, match="seed"):
        generate_task(-1)
    with pytest.raises(ValueError, match="max_steps"):
        AlfWorldEnv(max_steps=0)
    with pytest.raises(ValueError, match="expert must be one of search, planner"):
        AlfWorldEnv(expert="oracle")
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        make_env("alfworld", task_types=["cook_dinner"])


def test_room_size_follows_num_receptacles():
    for seed in range(20):
        small = generate_task(seed, num_receptacles=4, num_distractors=0)
        # the task needs at most 4 receptacles (target, appliance/lamp holder, two sources)
        assert small["num_receptacles"] <= 5
        declared = re.findall(r"^\s+\S+ - receptacle$", small["pddl_problem"], re.MULTILINE)
        assert len(declared) == small["num_receptacles"]
        big = generate_task(seed, num_receptacles=12, num_distractors=10)
        assert big["num_objects"] > small["num_objects"]


# ---- the real engine -------------------------------------------------------------------------
def test_registered_and_first_observation_is_alfworld_text(env):
    assert isinstance(make_env("alfworld"), AlfWorldEnv)
    obs = env.reset(3)
    task = generate_task(3)
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
    assert obs.endswith(f"Your task is to: {task['goal']}")
    assert "Welcome to TextWorld" not in obs
    assert env.task == task["goal"] and env.anchor == obs
    admissible = env.admissible_actions
    assert "help" not in admissible and "look" in admissible and "inventory" in admissible
    assert all(a.startswith("go to ") for a in admissible if a not in ("look", "inventory"))
    assert env.game_file.name == "3.tw-pddl"


@pytest.fixture(scope="module")
def planner_env(tmp_path_factory):
    env = AlfWorldEnv(cache_dir=tmp_path_factory.mktemp("alfworld-cache"), expert="planner")
    yield env
    env.close()


@pytest.mark.slow  # 25 s on the loaded 2-core machine; the held-out test below stays fast
def test_planner_plans_win_30_tasks_of_all_types(planner_env):
    lengths: dict[str, list[int]] = collections.defaultdict(list)
    for seed in range(30):
        steps, reward = play_expert(planner_env, seed)
        assert planner_env.won and reward == WIN_REWARD, seed
        assert planner_env.task == generate_task(seed)["goal"]
        lengths[generate_task(seed)["task_type"]].append(steps)
    assert set(lengths) == set(TASK_TYPES)
    # full-knowledge plans: walk, (open), take, (walk, clean/heat/cool), walk, (open), put
    assert all(3 <= n <= 14 for ns in lengths.values() for n in ns), dict(lengths)
    assert min(lengths["pick_two_obj_and_place"]) >= 6  # two pick-and-place trips


def search_until_first_take(env: AlfWorldEnv, seed: int) -> tuple[list[str], list[str]]:
    """The searching expert's commands from reset up to its first take; and the room order."""
    env.reset(seed)
    room = [a[len("go to ") :] for a in env.admissible_actions if a.startswith("go to ")]
    commands: list[str] = []
    while not env.done and not (commands and commands[-1].startswith("take ")):
        commands.append(env.expert_action())
        env.step(act(commands[-1]))
    return commands, room


@pytest.mark.slow  # 51 s on the loaded 2-core machine
def test_searching_expert_wins_30_tasks_looking_only_where_it_can_see(env, planner_env):
    planner_walks_elsewhere = 0
    for seed in range(30):
        steps, reward = play_expert(env, seed)
        assert env.won and reward == WIN_REWARD, seed
        commands, room = search_until_first_take(env, seed)
        assert commands[0] == "go to " + room[0], (seed, commands)
        planner_env.reset(seed)
        planner_walks_elsewhere += planner_env.expert_action() != commands[0]
        # the search walks the room in order, opening what is closed, until the object shows
        walked = [c[len("go to ") :] for c in commands if c.startswith("go to ")]
        assert walked == room[: len(walked)], (seed, commands)
        taken = commands[-1][len("take ") : commands[-1].index(" from ")]
        assert taken not in env.reset(seed), seed  # it had to be found
    # the planner, which knows where the object is hidden, mostly walks straight there instead
    assert planner_walks_elsewhere >= 15, planner_walks_elsewhere


def test_expert_plans_win_held_out_seeds(env):
    for i in range(6):
        play_expert(env, EVAL_SEED_OFFSET + i)
        assert env.won


@pytest.mark.slow
@pytest.mark.parametrize("expert", ["search", "planner"])
def test_experts_win_200_tasks(expert, tmp_path):
    env = AlfWorldEnv(cache_dir=tmp_path, expert=expert)
    counts: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    try:
        for seed in range(200):
            play_expert(env, seed)
            assert env.won, seed
            counts[generate_task(seed)["task_type"]] += 1
    finally:
        env.close()
    assert set(counts) == set(TASK_TYPES) and min(counts.values()) >= 15, counts
    print(f"200 {expert} episodes in {time.perf_counter() - start:.1f}s; per type {dict(counts)}")


def test_same_seed_same_game_through_the_engine(env, tmp_path):
    other = AlfWorldEnv(cache_dir=tmp_path)
    try:
        for seed in (5, EVAL_SEED_OFFSET + 5):
            assert env.reset(seed) == other.reset(seed)
            assert env.admissible_actions == other.admissible_actions
            assert env.expert_action() == other.expert_action()
    finally:
        other.close()


def test_max_steps_ends_the_episode_without_reward():
    env = AlfWorldEnv(max_steps=3)
    try:
        env.reset(0)
        rewards = [env.step(act("look")) for _ in range(3)]
        assert [r.done for r in rewards] == [False, False, True]
        assert all(r.reward == 0.0 and r.info["valid"] for r in rewards) and not env.won
    finally:
        env.close()


def test_actions_match_ignoring_case_and_change_the_state(env):
    env.reset(1)
    target = sorted(a for a in env.admissible_actions if a.startswith("go to "))[0]
    result = env.step(act(target.upper()))
    assert result.info["valid"]
    assert result.observation.startswith(f"You arrive at {target[len('go to ') :]}.")
    assert env.observation == result.observation


@pytest.mark.parametrize(
    "response",
    [
        "go to cabinet 1",  # no tags
        "<think>" + "x" * 100_000 + "</think><action>look</action>",  # 100k characters
        "<action>go to \udc80cabinet 1</action>",  # invalid unicode (lone surrogate)
        "<action>look</action><action>inventory</action>",  # two actions
        b"<action>look</action>",  # not text at all
    ],
)
def test_unparseable_responses_are_invalid_turns(env, response):
    obs = env.reset(2)
    before = (env.admissible_actions, env.expert_action())
    result = env.step(response)
    assert not result.info["valid"] and not result.info["tool_call"]
    assert result.reward == 0.0 and not result.done
    assert env.observation == obs and (env.admissible_actions, env.expert_action()) == before


@pytest.mark.parametrize("action", ["fly to the moon", "help", "take mug 99 from cabinet 1"])
def test_inadmissible_actions_are_invalid_turns(env, action):
    obs = env.reset(2)
    before = (env.admissible_actions, env.expert_action())
    result = env.step(act(action))
    assert not result.info["valid"] and result.observation == "Nothing happens."
    assert result.reward == 0.0 and not result.done and env.valid_steps == 0
    assert env.observation == obs and (env.admissible_actions, env.expert_action()) == before
    # the episode goes on: the expert still wins from here
    while not env.done:
        env.step(act(env.expert_action()))
    assert env.won


def test_engine_timeout_is_a_clear_error_and_reset_recovers(monkeypatch, tmp_path):
    env = AlfWorldEnv(cache_dir=tmp_path)
    try:
        env.reset(4)

        def slow_step(self, command):
            time.sleep(1.0)

        monkeypatch.setattr(AlfWorldEngine, "step", slow_step)
        env.step_timeout_s = 0.2
        with pytest.raises(
            EnvTimeoutError, match=r"step 'look' took longer than step_timeout_s=0\.2s"
        ):
            env.step(act("look"))
        assert env.done and env.admissible_actions is None
        monkeypatch.undo()
        env.step_timeout_s = 10.0
        env.reset(4)  # a fresh engine
        play_expert(env, 4)
        assert env.won
    finally:
        env.close()


def test_closed_engines_are_reused_not_leaked(tmp_path):
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc/self/maps to count loaded libraries")

    def loaded_engine_copies() -> int:
        # each engine maps its own (deleted) copy of Fast Downward's library: count distinct files
        with open("/proc/self/maps") as f:
            fields = [line.split() for line in f if "libdownward" in line]
        return len({(cols[3], cols[4]) for cols in fields})

    before = loaded_engine_copies()
    counts = []
    for _ in range(3):  # open 4 envs at once and close them, three times
        envs = [AlfWorldEnv(cache_dir=tmp_path) for _ in range(4)]
        for seed, e in enumerate(envs):
            e.reset(seed)
        counts.append(loaded_engine_copies())
        for e in envs:
            e.close()
    assert counts[0] == counts[1] == counts[2] <= before + 4, (before, counts)


# ---- official game folders --------------------------------------------------------------------
def test_game_files_folder_is_indexed_by_seed(tmp_path):
    paths = write_games(tmp_path / "games", 4, start_seed=10)
    assert [p.name for p in paths] == [
        f"{10 + i:08d}-{generate_task(10 + i)['task_type']}.tw-pddl" for i in range(4)
    ]
    env = AlfWorldEnv(game_files=tmp_path / "games")
    try:
        assert env.official_games == tuple(sorted(paths))
        assert [env.game_file_for(s) for s in range(6)] == [paths[s % 4] for s in range(6)]
        env.reset(5)  # -> paths[1], the task of seed 11
        assert env.task == generate_task(11)["goal"]
        kind = generate_task(12)["task_type"]
        only = AlfWorldEnv(game_files=tmp_path / "games", task_types=[kind])
        assert all(kind in p.name for p in only.official_games) and paths[2] in only.official_games
    finally:
        env.close()


def test_alfworld_data_variable_and_empty_folders(tmp_path, monkeypatch):
    write_games(tmp_path / "data", 2)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "data"))
    assert len(AlfWorldEnv().official_games) == 2
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no ALFWorld game files"):
        AlfWorldEnv()
    # ALFWorld sets ALFWORLD_DATA to ~/.cache/alfworld on import: empty there = generated tasks
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "home" / ".cache" / "alfworld"))
    assert AlfWorldEnv().official_games is None


# ---- engine speedups and the optional dependency ------------------------------------------------
TRACE_SCRIPT = textwrap.dedent(
    """
    import json
    from spear_rl.envs.alfworld import AlfWorldEnv

    def trace(seeds, cache_dir):
        env, out = AlfWorldEnv(cache_dir=cache_dir), []
        for seed in seeds:
            out.append([env.reset(seed), env.admissible_actions, env.expert_action()])
            for k in range(5):  # wander, then let the expert finish
                options = env.admissible_actions
                r = env.step("<action>" + options[(7 * seed + 3 * k) % len(options)] + "</action>")
                out.append([r.observation, r.reward, env.admissible_actions, env.expert_action()])
            while not env.done:
                r = env.step("<action>" + env.expert_action() + "</action>")
                out.append([r.observation, r.reward, env.admissible_actions, env.expert_action()])
        env.close()
        return out
    """
)


def test_engine_speedups_do_not_change_the_game(tmp_path):
    namespace: dict = {}
    exec(TRACE_SCRIPT, namespace)
    # two objects (twice: a re-reset of the loaded game), a lamp, a heat task
    seeds = [0, 0, 8, 3]
    assert {generate_task(s)["task_type"] for s in seeds} >= {
        "pick_two_obj_and_place",
        "look_at_obj_in_light",
    }
    fast = namespace["trace"](seeds, str(tmp_path / "a"))
    code = TRACE_SCRIPT + (
        "\nimport spear_rl.envs.alfworld.engine as engine, sys\n"
        f"result = trace({seeds!r}, {str(tmp_path / 'b')!r})\n"
        "assert not engine._speedups_installed\n"
        "print(json.dumps(result))\n"
    )
    environ = {**os.environ, "SPEAR_ALFWORLD_ENGINE_SPEEDUPS": "0", "PYTHONPATH": SRC}
    environ.pop("ALFWORLD_DATA", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == json.loads(json.dumps(fast))


def test_imports_without_alfworld_and_says_how_to_install():
    code = textwrap.dedent(
        """
        import sys

        class BlockAlfWorld:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("alfworld", "textworld", "fast_downward"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, BlockAlfWorld())
        import spear_rl.envs.alfworld as alfworld
        from spear_rl.envs.base import make_env
        try:
            make_env("alfworld")
        except alfworld.AlfWorldMissingError as err:
            print(str(err))
        """
    )
    environ = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    message = out.stdout.strip()
    assert message.startswith("ALFWorld needs the optional extra: pip install 'spear-rl[alfworld]'")
    assert "\n" not in message
