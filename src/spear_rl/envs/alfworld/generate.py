"""ALFWorld tasks generated from a seed: a PDDL problem over the ALFRED domain plus the goal text.

ALFWorld's own games are PDDL problems over `alfred.pddl`, played by TextWorld through the
`alfred.twl2` grammar. We write such problems ourselves: a room taken from an ALFRED floor plan
(`scenes.py`), trimmed to `num_receptacles` receptacles, with the task's objects and
`num_distractors` other objects put in receptacles that can hold them (ALFRED's
`VAL_RECEPTACLE_OBJECTS`), the abilities ALFRED gives each object type (cleanable, heatable,
coolable, sliceable, toggleable), and a goal in the form of ALFWorld's goal library. The result
runs on the real engine, whose planner then provides the expert plan.

Everything is a pure function of the seed (string-seeded `random.Random`, sorted vocabularies), so
`generate_task(seed)` is the same task on every machine and every run.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spear_rl.envs.alfworld._deps import pddl_domain, text_grammar
from spear_rl.envs.alfworld.scenes import ReceptacleSpot, Scene, scenes_of_kind, vocabulary

# ALFWorld's six task types, in its own numbering order (1..6).
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

# The two phrasings ALFWorld uses for each task type (the engine's grammar adds the final period).
GOAL_TEMPLATES = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": (
        "look at {obj} under the {toggle}",
        "examine the {obj} with the {toggle}",
    ),
    "pick_clean_then_place_in_recep": (
        "put a clean {obj} in {recep}",
        "clean some {obj} and put it in {recep}",
    ),
    "pick_heat_then_place_in_recep": (
        "put a hot {obj} in {recep}",
        "heat some {obj} and put it in {recep}",
    ),
    "pick_cool_then_place_in_recep": (
        "put a cool {obj} in {recep}",
        "cool some {obj} and put it in {recep}",
    ),
    "pick_two_obj_and_place": (
        "put two {obj} in {recep}",
        "find two {obj} and put them in {recep}",
    ),
}

DEFAULT_NUM_RECEPTACLES = 10
DEFAULT_NUM_DISTRACTORS = 6
GENERATOR_VERSION = 1  # bump when the same seed would give a different game (cache keys use it)

# The appliance a state-change task needs, the state it sets, and the ability the object needs.
APPLIANCES = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "isClean", "cleanable"),
    "pick_heat_then_place_in_recep": ("Microwave", "isHot", "heatable"),
    "pick_cool_then_place_in_recep": ("Fridge", "isCool", "coolable"),
}
# Furniture a lamp stands on or beside. The domain's ToggleObject needs the lamp `inReceptacle` of
# the receptacle at the agent's location, so floor lamps are attached to a piece of furniture too.
LAMP_HOLDERS = (
    "CoffeeTable",
    "CounterTop",
    "Desk",
    "DiningTable",
    "Dresser",
    "Shelf",
    "SideTable",
    "TVStand",
)
# Types the domain's actions name as constants; declared in every problem so the planner knows them.
DOMAIN_OTYPES = ("ButterKnife", "Knife")
DOMAIN_RTYPES = ("Fridge", "Microwave", "SinkBasin")
GRID = 0.25  # metres per location-grid cell (ALFRED's agent step)
MAX_SCENE_TRIES = 50


@dataclass(frozen=True)
class _TaskChoice:
    """The parts of a task fixed before the room is furnished."""

    scene: Scene
    object_type: str
    target_type: str | None  # receptacle type the object goes to (None for the light task)
    source_types: tuple[str, ...]  # receptacle types the task objects may start in
    appliance_type: str | None  # SinkBasin / Microwave / Fridge for state-change tasks
    lamp_type: str | None
    lamp_holder_types: tuple[str, ...]


@dataclass
class _Room:
    receptacles: list[ReceptacleSpot]
    placements: list[tuple[str, ReceptacleSpot]]  # (object type, receptacle it starts in)
    lamp: tuple[str, ReceptacleSpot] | None


def check_task_type(task_type: str) -> str:
    if task_type not in TASK_TYPES:
        close = difflib.get_close_matches(str(task_type), TASK_TYPES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown ALFWorld task type {task_type!r}; known: {', '.join(TASK_TYPES)}.{hint}"
        )
    return task_type


def _check_size(num_receptacles: int, num_distractors: int) -> None:
    if not isinstance(num_receptacles, int) or not 1 <= num_receptacles <= 100:
        raise ValueError(f"num_receptacles must be an int in [1, 100], got {num_receptacles!r}")
    if not isinstance(num_distractors, int) or not 0 <= num_distractors <= 100:
        raise ValueError(f"num_distractors must be an int in [0, 100], got {num_distractors!r}")


def generate_task(
    seed: int,
    task_type: str | Sequence[str] | None = None,
    *,
    num_receptacles: int = DEFAULT_NUM_RECEPTACLES,
    num_distractors: int = DEFAULT_NUM_DISTRACTORS,
) -> dict[str, Any]:
    """The task of `seed`: its type, goal text, room summary and PDDL problem.

    `task_type`: one name fixes the type; a list draws uniformly among its names; None draws
    uniformly among all six. `num_receptacles` is the room size (the receptacles the task needs
    are always included, so a room can exceed it by a few); `num_distractors` other objects are
    scattered around. Pack the result with `game_json` / `write_game` to play it.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_size(num_receptacles, num_distractors)
    if task_type is None:
        allowed: Sequence[str] = TASK_TYPES
    elif isinstance(task_type, str):
        allowed = (task_type,)
    else:
        allowed = tuple(task_type)
        if not allowed:
            raise ValueError("task_type list is empty; give None for all six task types")
    for name in allowed:
        check_task_type(name)

    rng = random.Random(f"spear-rl/alfworld/{seed}")
    chosen_type = allowed[rng.randrange(len(allowed))]
    choice = _choose_task(rng, chosen_type)
    room = _furnish(rng, choice, chosen_type, num_receptacles, num_distractors)
    template = GOAL_TEMPLATES[chosen_type][rng.randrange(2)]
    goal = template.format(
        obj=choice.object_type.lower(),
        recep=(choice.target_type or "").lower(),
        toggle=(choice.lamp_type or "").lower(),
    )
    problem = _problem_text(rng, f"spear_rl_alfworld_{seed}", room, _goal_pddl(chosen_type, choice))
    return {
        "seed": seed,
        "task_type": chosen_type,
        "goal": goal + ".",
        "scene": choice.scene.name,
        "object_type": choice.object_type.lower(),
        "receptacle_type": choice.target_type.lower() if choice.target_type else None,
        "toggle_type": choice.lamp_type.lower() if choice.lamp_type else None,
        "num_receptacles": len(room.receptacles),
        "num_objects": len(room.placements) + (1 if room.lamp else 0),
        "pddl_problem": problem,
    }


# ---- choosing the task -----------------------------------------------------------------------
def _choose_task(rng: random.Random, task_type: str) -> _TaskChoice:
    scenes = [
        scene for kind in vocabulary().task_scene_kinds[task_type] for scene in scenes_of_kind(kind)
    ]
    for _ in range(MAX_SCENE_TRIES):
        choice = _choose_in_scene(rng, task_type, rng.choice(scenes))
        if choice is not None:
            return choice
    raise RuntimeError(f"no ALFRED floor plan fits task type {task_type!r}")  # pragma: no cover


def _choose_in_scene(rng: random.Random, task_type: str, scene: Scene) -> _TaskChoice | None:
    vocab = vocabulary()
    rtypes = scene.receptacle_types()
    appliance, _, ability = APPLIANCES.get(task_type, (None, None, None))
    if appliance is not None and appliance not in rtypes:
        return None
    candidates = list(scene.object_types)
    if ability is not None:
        candidates = [o for o in candidates if o in getattr(vocab, ability)]

    lamp_type, holders = None, ()
    if task_type == "look_at_obj_in_light":
        holders = tuple(r for r in LAMP_HOLDERS if r in rtypes)
        if not scene.lamp_types or not holders:
            return None
        lamp_type = rng.choice(scene.lamp_types)

    # options[o] = [(target type, source types)]: a place to go to and somewhere else to start
    options: dict[str, list[tuple[str | None, tuple[str, ...]]]] = {}
    for otype in candidates:
        can_hold = sorted(r for r in rtypes if otype in vocab.holds[r])
        if task_type == "look_at_obj_in_light":
            if can_hold:
                options[otype] = [(None, tuple(can_hold))]
            continue
        pairs = []
        for target in can_hold:
            sources = tuple(r for r in can_hold if r != target)
            if target != appliance and sources:
                pairs.append((target, sources))
        if pairs:
            options[otype] = pairs
    if not options:
        return None
    otype = rng.choice(sorted(options))
    target, sources = rng.choice(options[otype])
    return _TaskChoice(scene, otype, target, sources, appliance, lamp_type, holders)


def _furnish(
    rng: random.Random,
    choice: _TaskChoice,
    task_type: str,
    num_receptacles: int,
    num_distractors: int,
) -> _Room:
    """Pick the room's receptacles (the needed ones first) and put the objects in them."""
    spots = choice.scene.receptacles
    chosen: list[ReceptacleSpot] = []

    def include(spot: ReceptacleSpot) -> ReceptacleSpot:
        if spot not in chosen:
            chosen.append(spot)
        return spot

    def any_of(types: Sequence[str]) -> ReceptacleSpot:
        return rng.choice([s for s in spots if s.rtype in types])

    if choice.target_type is not None:
        include(any_of([choice.target_type]))
    if choice.appliance_type is not None:
        include(any_of([choice.appliance_type]))
    lamp = None
    if choice.lamp_type is not None:
        lamp = (choice.lamp_type, include(any_of(choice.lamp_holder_types)))

    count = rng.randint(2, 3) if task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
    placements = [(choice.object_type, include(any_of(choice.source_types))) for _ in range(count)]

    others = [s for s in spots if s not in chosen]
    rng.shuffle(others)
    for spot in others[: max(0, num_receptacles - len(chosen))]:
        include(spot)

    # distractors: other portable types of the scene, in receptacles of the room that hold them
    holds = vocabulary().holds
    kinds = [t for t in choice.scene.object_types if t != choice.object_type]
    for _ in range(num_distractors if kinds else 0):
        for _attempt in range(5):
            otype = rng.choice(kinds)
            holders = [s for s in chosen if otype in holds[s.rtype]]
            if holders:
                placements.append((otype, rng.choice(holders)))
                break
    return _Room(sorted(chosen, key=lambda s: s.rid), placements, lamp)


# ---- writing PDDL ----------------------------------------------------------------------------
def mangle(name: str) -> str:
    """ALFRED id -> PDDL name, the way ALFWorld spells them (AlfredDemangler reverses it)."""
    for char, word in (
        ("|", "_bar_"),
        ("+", "_plus_"),
        ("-", "_minus_"),
        (".", "_dot_"),
        (",", "_comma_"),
    ):
        name = name.replace(char, word)
    return name


def _locations(rng: random.Random, receptacles: list[ReceptacleSpot]) -> tuple[dict[str, str], str]:
    """One distinct location per receptacle (the grammar's "go to" lists every receptacle at the
    destination, so two at one spot would break the commands), plus the agent's start."""
    used: set[tuple[int, int, int, int]] = set()

    def claim(key: tuple[int, int, int, int]) -> str:
        while key in used:
            key = (key[0] + 1, key[1], key[2], key[3])
        used.add(key)
        return mangle("loc|" + "|".join(str(v) for v in key))

    def random_key() -> tuple[int, int, int, int]:
        return (rng.randint(-12, 12), rng.randint(-12, 12), rng.randrange(4), 30)

    where = {}
    for spot in receptacles:
        if spot.pose is None:
            key = random_key()
        else:
            x, z, rotation, horizon = spot.pose
            key = (round(x / GRID), round(z / GRID), (rotation // 90) % 4, horizon)
        where[spot.rid] = claim(key)
    return where, claim(random_key())


def _object_ids(rng: random.Random, types: list[str]) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for otype in types:
        while True:
            x, y, z = rng.uniform(-3, 3), rng.uniform(0.1, 2.0), rng.uniform(-3, 3)
            oid = f"{otype}|{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"
            if oid not in seen:
                break
        seen.add(oid)
        ids.append(oid)
    return ids


def _problem_text(rng: random.Random, name: str, room: _Room, goal: str) -> str:
    vocab = vocabulary()
    where, agent_at = _locations(rng, room.receptacles)
    items = list(room.placements) + ([room.lamp] if room.lamp else [])
    ids = _object_ids(rng, [otype for otype, _ in items])

    rtypes = sorted({s.rtype for s in room.receptacles})
    otypes = sorted({otype for otype, _ in items})
    objects = ["agent1 - agent"]
    objects += [f"{t}Type - otype" for t in sorted(set(otypes) | set(DOMAIN_OTYPES))]
    objects += [f"{t}Type - rtype" for t in sorted(set(rtypes) | set(DOMAIN_RTYPES))]
    objects += [f"{mangle(s.rid)} - receptacle" for s in room.receptacles]
    objects += [f"{mangle(oid)} - object" for oid in ids]
    objects += [f"{loc} - location" for loc in sorted({*where.values(), agent_at})]

    init = [f"(atLocation agent1 {agent_at})"]
    for spot in room.receptacles:
        r = mangle(spot.rid)
        init += [
            f"(receptacleType {r} {spot.rtype}Type)",
            f"(receptacleAtLocation {r} {where[spot.rid]})",
        ]
        if spot.rtype in vocab.openable:
            init.append(f"(openable {r})")
    abilities = (
        ("cleanable", vocab.cleanable),
        ("heatable", vocab.heatable),
        ("coolable", vocab.coolable),
        ("sliceable", vocab.sliceable),
        ("isReceptacleObject", vocab.movable_receptacles),
    )
    lamp_index = len(room.placements) if room.lamp else -1
    for k, ((otype, spot), oid) in enumerate(zip(items, ids, strict=True)):
        o, r = mangle(oid), mangle(spot.rid)
        init += [
            f"(objectType {o} {otype}Type)",
            f"(objectAtLocation {o} {where[spot.rid]})",
            f"(inReceptacle {o} {r})",
        ]
        if k == lamp_index:
            init.append(f"(toggleable {o})")
            continue
        init.append(f"(pickupable {o})")
        init += [f"({pred} {o})" for pred, types in abilities if otype in types]
    init += [
        f"(canContain {r}Type {o}Type)"
        for r in rtypes
        for o in otypes
        if o in vocab.holds.get(r, ())
    ]
    indent = "\n        "
    return (
        f"(define (problem {name})\n"
        "    (:domain alfred)\n"
        f"    (:objects{indent}{indent.join(objects)}\n    )\n"
        f"    (:init{indent}{indent.join(init)}\n    )\n"
        f"    (:goal\n{goal}\n    )\n"
        ")\n"
    )


def _goal_pddl(task_type: str, choice: _TaskChoice) -> str:
    """The goal condition, in the form of ALFWorld's goal library (types, not instances)."""
    otype, rtype = f"{choice.object_type}Type", f"{choice.target_type}Type"
    if task_type == "look_at_obj_in_light":
        return f"""        (and
            (exists (?t - object ?r - receptacle ?l - location)
                (and (objectType ?t {choice.lamp_type}Type) (toggleable ?t) (isToggled ?t)
                     (inReceptacle ?t ?r) (receptacleAtLocation ?r ?l) (atLocation agent1 ?l)))
            (exists (?o - object) (and (objectType ?o {otype}) (holds agent1 ?o))))"""
    if task_type == "pick_two_obj_and_place":
        return f"""        (exists (?r - receptacle ?o1 - object ?o2 - object)
            (and (receptacleType ?r {rtype}) (objectType ?o1 {otype}) (objectType ?o2 {otype})
                 (not (= ?o1 ?o2)) (inReceptacle ?o1 ?r) (inReceptacle ?o2 ?r)))"""
    state = f" ({APPLIANCES[task_type][1]} ?o)" if task_type in APPLIANCES else ""
    return f"""        (exists (?r - receptacle ?o - object)
            (and (receptacleType ?r {rtype}) (objectType ?o {otype}) (inReceptacle ?o ?r){state}))"""


# ---- packing as a game file ------------------------------------------------------------------
def game_json(task: dict[str, Any]) -> dict[str, Any]:
    """The task as ALFWorld's `.tw-pddl` game: domain, grammar carrying the goal, problem."""
    goal = task["goal"].rstrip(".")  # the grammar's "Your task is to: UNKNOWN GOAL." adds it
    return {
        "pddl_domain": pddl_domain(),
        "grammar": text_grammar().replace("UNKNOWN GOAL", goal),
        "pddl_problem": task["pddl_problem"],
        "solvable": True,
    }


def write_game(task: dict[str, Any], path: str | Path) -> Path:
    """Write the task's `.tw-pddl` file atomically (parallel writers of one seed do not clash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(game_json(task), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
