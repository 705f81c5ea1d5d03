"""The rooms tasks are built in: ALFRED floor plans and object vocabularies shipped with alfworld.

Each floor plan ships `FloorPlanN-openable.json` (receptacle instances with the pose the agent
stands at to use them) and `FloorPlanN-objects.json` (every object type present). A `Scene` keeps
the static receptacles of a floor plan and the portable object types seen in it; receptacle types
the plan lists without a pose (coffee machines, toasters, garbage cans...) get one instance
without a pose, to which the generator gives a location of its own.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from spear_rl.envs.alfworld._deps import constants, layouts_dir

SCENE_KINDS = ("Kitchen", "LivingRoom", "Bedroom", "Bathroom")
LAMP_TYPES = ("DeskLamp", "FloorLamp")


@dataclass(frozen=True)
class ReceptacleSpot:
    """One receptacle instance of a floor plan."""

    rid: str  # ALFRED id, e.g. "Cabinet|+00.68|+00.50|-02.20" or "Sink|...|SinkBasin"
    rtype: str  # receptacle type, e.g. "Cabinet", "SinkBasin"
    # (x, z, rotation, horizon) of the pose the agent takes to use it; None when not shipped
    pose: tuple[float, float, int, int] | None


@dataclass(frozen=True)
class Scene:
    name: str  # "FloorPlan12"
    kind: str  # one of SCENE_KINDS
    receptacles: tuple[ReceptacleSpot, ...]  # sorted by id
    object_types: tuple[str, ...]  # portable object types present (sorted)
    lamp_types: tuple[str, ...]  # lamp types present (sorted)

    def receptacle_types(self) -> set[str]:
        return {spot.rtype for spot in self.receptacles}


@dataclass(frozen=True)
class Vocabulary:
    """What ALFRED says about object types, as sorted tuples (never sets: choices must not depend
    on the interpreter's hash seed)."""

    static_receptacles: tuple[str, ...]  # receptacle types that stay put (not mugs, pots...)
    holds: dict[str, tuple[str, ...]]  # receptacle type -> object types it can contain
    portable: tuple[str, ...]  # object types that can be picked up
    openable: tuple[str, ...]
    movable_receptacles: tuple[str, ...]  # portable objects that can hold others (mug, bowl...)
    cleanable: tuple[str, ...]
    heatable: tuple[str, ...]
    coolable: tuple[str, ...]
    sliceable: tuple[str, ...]
    scene_numbers: dict[str, tuple[int, ...]]  # scene kind -> floor plan numbers
    task_scene_kinds: dict[str, tuple[str, ...]]  # task type -> scene kinds it is valid in


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    c = constants()
    static = sorted(
        (set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES)) & set(c.VAL_RECEPTACLE_OBJECTS)
    )
    holds = {rtype: tuple(sorted(c.VAL_RECEPTACLE_OBJECTS[rtype])) for rtype in static}
    portable = {otype for values in holds.values() for otype in values}
    portable = {otype for otype in portable if not otype.endswith("Sliced")}
    actions = c.VAL_ACTION_OBJECTS
    return Vocabulary(
        static_receptacles=tuple(static),
        holds=holds,
        portable=tuple(sorted(portable | set(c.MOVABLE_RECEPTACLES))),
        openable=tuple(sorted(c.OPENABLE_CLASS_LIST)),
        movable_receptacles=tuple(sorted(c.MOVABLE_RECEPTACLES)),
        cleanable=tuple(sorted(actions["Cleanable"])),
        heatable=tuple(sorted(actions["Heatable"])),
        coolable=tuple(sorted(actions["Coolable"])),
        sliceable=tuple(sorted(actions["Sliceable"])),
        scene_numbers={kind: tuple(c.SCENE_TYPE[kind]) for kind in SCENE_KINDS},
        task_scene_kinds={
            task: tuple(kind for kind in SCENE_KINDS if kind in kinds)
            for task, kinds in c.GOALS_VALID.items()
        },
    )


def _spot_from_layout(rid: str, pose: list) -> ReceptacleSpot | None:
    parts = rid.split("|")
    if len(parts) == 5:  # "Sink|x|y|z|SinkBasin": the basin is the receptacle
        rtype = parts[4]
        if rtype != parts[0] + "Basin":  # a few plans pair a bathtub with a sink basin id
            return None
    else:
        rtype = parts[0]
    if rtype not in vocabulary().static_receptacles:
        return None
    x, z, rotation, horizon = pose
    return ReceptacleSpot(rid, rtype, (float(x), float(z), int(rotation), int(horizon)))


def _synthetic_id(rtype: str, number: int) -> str:
    """An id for a receptacle type the plan lists without a pose (unique within the scene)."""
    coords = f"+0{number % 10}.{number:02d}|+00.90|-0{number % 10}.50"
    if rtype.endswith("Basin"):
        return f"{rtype[: -len('Basin')]}|{coords}|{rtype}"
    return f"{rtype}|{coords}"


@functools.cache
def load_scene(number: int) -> Scene:
    """The floor plan `FloorPlan{number}` as a Scene."""
    folder = layouts_dir()
    name = f"FloorPlan{number}"
    with open(folder / f"{name}-openable.json", encoding="utf-8") as f:
        poses = json.load(f)
    with open(folder / f"{name}-objects.json", encoding="utf-8") as f:
        present = set(json.load(f))
    spots = [s for rid, pose in sorted(poses.items()) if (s := _spot_from_layout(rid, pose))]
    with_pose = {spot.rtype for spot in spots}
    for k, rtype in enumerate(sorted(present & set(vocabulary().static_receptacles))):
        if rtype not in with_pose:
            spots.append(ReceptacleSpot(_synthetic_id(rtype, k), rtype, None))
    kind = next(k for k, numbers in vocabulary().scene_numbers.items() if number in numbers)
    return Scene(
        name=name,
        kind=kind,
        receptacles=tuple(sorted(spots, key=lambda s: s.rid)),
        object_types=tuple(sorted(present & set(vocabulary().portable))),
        lamp_types=tuple(sorted(present & set(LAMP_TYPES))),
    )


def scenes_of_kind(kind: str) -> list[Scene]:
    return [load_scene(n) for n in vocabulary().scene_numbers[kind]]
