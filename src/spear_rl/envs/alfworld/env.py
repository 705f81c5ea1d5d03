"""ALFWorld household tasks behind the Env protocol, played on the real ALFWorld engine.

Seeds pick generated tasks (`generate.py`, written once to `cache_dir`) or, when a folder of
official ALFWorld games is given (`game_files`, or the ALFWORLD_DATA variable), index the sorted
list of its `.tw-pddl` files (`seed % number of games`).

Conventions:
- an action is valid when it is one of the engine's admissible commands (compared ignoring case);
  "help" is left out: it prints a fixed command list, which the system prompt already gives;
- an inadmissible action is an invalid turn: the state does not change and the observation is
  ALFWorld's own "Nothing happens.";
- reward 10 when the goal is reached (the episode ends, won), 0 otherwise; the episode also ends
  after `max_steps` valid actions;
- `expert_action()` is the engine's planner move (expert="planner") or, by default ("search"), the
  move of an expert that searches for objects it has not seen instead of knowing where they are
  (`expert.py`): only the latter can be imitated from the observations;
- the first observation is ALFWorld's intro without TextWorld's banner: "You are in the middle of
  a room. ... Your task is to: put a clean mug in coffeemachine."; `task` is the goal sentence.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spear_rl.envs.alfworld._deps import default_data_dir
from spear_rl.envs.alfworld.engine import AlfWorldEngine, prepare_engine
from spear_rl.envs.alfworld.expert import SearchingExpert
from spear_rl.envs.alfworld.generate import (
    DEFAULT_NUM_DISTRACTORS,
    DEFAULT_NUM_RECEPTACLES,
    GENERATOR_VERSION,
    TASK_TYPES,
    check_task_type,
    generate_task,
    write_game,
)
from spear_rl.envs.base import Env, EnvTimeoutError, StepResult, call_with_timeout, register_env

WIN_REWARD = 10.0
NOTHING_HAPPENS = "Nothing happens."
BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_LINE = re.compile(r"Your task is to:\s*(.+)")
_EXCLUDED_COMMANDS = frozenset({"help"})
EXPERTS = ("search", "planner")

SYSTEM_PROMPT = (
    "You are an expert agent in a household (ALFWorld). You see a room full of receptacles "
    "(cabinets, drawers, countertops, a fridge, a microwave, a sinkbasin, ...) and your task. "
    "Each turn you do one thing: go to a receptacle, open or close it, take an object from it, "
    "move the object you hold to a receptacle, examine something, look, check your inventory, "
    "clean an object with the sinkbasin, heat it with the microwave, cool it with the fridge, or "
    "use a lamp. You hold one object at a time. Reply with your reasoning in <think>...</think> "
    "followed by exactly one action in <action>...</action>. The action must be one of the "
    "admissible actions you are given, copied exactly (for example "
    "<action>go to countertop 1</action>); anything else is invalid and changes nothing."
)


@functools.cache
def _default_cache_dir() -> Path:
    """One temporary folder per process for generated games, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="spear-rl-alfworld-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def official_game_dir(game_files: str | os.PathLike | None) -> Path | None:
    """The folder of official games to play: `game_files`, else ALFWORLD_DATA, else None.

    Importing ALFWorld's engine sets ALFWORLD_DATA to its default cache folder when it is unset;
    that folder counts only when it holds games (then the user has downloaded them there).
    """
    if game_files is not None:
        return Path(game_files).expanduser()
    env_value = os.environ.get("ALFWORLD_DATA")
    if not env_value:
        return None
    path = Path(env_value).expanduser()
    if path == default_data_dir() and not any(_iter_games(path)):
        return None
    return path


def _iter_games(folder: Path):
    # ALFWorld itself skips the movable-receptacle and sliced-object tasks (not among the six)
    for path in folder.rglob("*.tw-pddl"):
        if "movable" not in str(path) and "Sliced" not in str(path):
            yield path


@functools.lru_cache(maxsize=16)
def list_official_games(folder: Path, task_types: tuple[str, ...] | None) -> tuple[Path, ...]:
    """Sorted `.tw-pddl` games under `folder`; with task_types, those whose path names the task
    type as a "-"-separated word (ALFWorld's "<task_type>-<object>-..." folders, or the
    "<seed>-<task_type>.tw-pddl" files `write_games` writes). Raises when there are none."""
    games = sorted(_iter_games(folder))
    if task_types is not None:
        wanted = set(task_types)

        def names_type(path: Path) -> bool:
            words = {w for part in path.with_suffix("").parts for w in part.split("-")}
            return bool(words & wanted)

        games = [g for g in games if names_type(g)]
    if not games:
        which = f" of task types {', '.join(task_types)}" if task_types else ""
        raise ValueError(
            f"no ALFWorld game files (*.tw-pddl){which} under {folder}; point game_files (or "
            "ALFWORLD_DATA) at a folder of official games (alfworld-download fetches them), or "
            "leave both unset to play generated tasks"
        )
    return tuple(games)


@register_env("alfworld")
class AlfWorldEnv(Env):
    """ALFWorld on the real engine; observation = ALFWorld's text, actions = its commands."""

    name = "alfworld"
    system_prompt = SYSTEM_PROMPT

    def __init__(
        self,
        task_types: Sequence[str] | None = None,
        max_steps: int = 50,
        game_files: str | os.PathLike | None = None,
        step_timeout_s: float = 10.0,
        cache_dir: str | os.PathLike | None = None,
        num_receptacles: int = DEFAULT_NUM_RECEPTACLES,
        num_distractors: int = DEFAULT_NUM_DISTRACTORS,
        expert: str = "search",
    ) -> None:
        super().__init__()
        if task_types is not None:
            if isinstance(task_types, str):
                task_types = [task_types]
            task_types = tuple(check_task_type(t) for t in task_types)
            if not task_types:
                raise ValueError("alfworld task_types is empty; give None for all six task types")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"alfworld max_steps must be a positive int, got {max_steps!r}")
        if not isinstance(step_timeout_s, (int, float)) or not step_timeout_s > 0:
            raise ValueError(f"alfworld step_timeout_s must be > 0, got {step_timeout_s!r}")
        if expert not in EXPERTS:
            raise ValueError(f"alfworld expert must be one of {', '.join(EXPERTS)}, got {expert!r}")
        self.expert = expert
        self._searcher = SearchingExpert()
        self.task_types: tuple[str, ...] | None = task_types
        self.max_steps = max_steps
        self.step_timeout_s = float(step_timeout_s)
        self.num_receptacles, self.num_distractors = num_receptacles, num_distractors
        folder = official_game_dir(game_files)
        self.official_games = None if folder is None else list_official_games(folder, task_types)
        if self.official_games is None:  # fail now on bad sizes (and a missing alfworld)
            generate_task(
                0, self.task_types, num_receptacles=num_receptacles, num_distractors=num_distractors
            )
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.game_file: Path | None = None
        self.valid_steps = 0  # valid actions this episode
        self._engine: AlfWorldEngine | None = None
        self._state: Any = None  # the engine's latest game state

    # ---- games -----------------------------------------------------------------------------
    def game_file_for(self, seed: int) -> Path:
        """The `.tw-pddl` file of task `seed` (generated and written on first use)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"alfworld seed must be a non-negative int, got {seed!r}")
        if self.official_games is not None:
            return self.official_games[seed % len(self.official_games)]
        types_key = (
            "all"
            if self.task_types is None
            else "t" + "".join(str(TASK_TYPES.index(t) + 1) for t in self.task_types)
        )
        folder = self.cache_dir or _default_cache_dir()
        key = f"v{GENERATOR_VERSION}-r{self.num_receptacles}-d{self.num_distractors}-{types_key}"
        path = folder / key / f"{seed}.tw-pddl"
        if not path.exists():
            task = generate_task(
                seed,
                self.task_types,
                num_receptacles=self.num_receptacles,
                num_distractors=self.num_distractors,
            )
            write_game(task, path)
        return path

    # ---- episode -----------------------------------------------------------------------------
    def _reset(self, seed: int) -> str:
        self.game_file = self.game_file_for(seed)
        if self._engine is None:
            prepare_engine()  # imports are not engine calls: outside the timeout
            self._engine = AlfWorldEngine()
        self._engine_call("load", self._engine.load, self.game_file)
        self._state = self._engine_call("reset", self._engine.reset)
        self.valid_steps = 0
        intro = self._state["feedback"].replace(BANNER, "").strip()
        found = _TASK_LINE.findall(intro)
        self.task = found[-1].strip() if found else ""
        self._searcher.start(intro, self.admissible_actions or [])
        return intro

    def _step_action(self, action: str) -> StepResult:
        if self._state is None:
            raise RuntimeError("step() called before reset()")
        command = action.strip().lower()
        if command not in self.admissible_actions:
            info = {"valid": False, "tool_call": False, "feedback": NOTHING_HAPPENS}
            return StepResult(NOTHING_HAPPENS, 0.0, False, info)
        self._state = self._engine_call(f"step {command!r}", self._engine.step, command)
        self.valid_steps += 1
        self._searcher.observe(command, self._state["feedback"])
        self.won = bool(self._state["won"])
        done = self.won or self.valid_steps >= self.max_steps
        reward = WIN_REWARD if self.won else 0.0
        info = {"valid": True, "tool_call": True}
        return StepResult(self._state["feedback"].strip(), reward, done, info)

    def _engine_call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return call_with_timeout(fn, *args, timeout_s=self.step_timeout_s)
        except EnvTimeoutError as err:
            if self._engine is not None:
                self._engine.abandon()
            self._engine, self._state, self.done = None, None, True
            raise EnvTimeoutError(
                f"ALFWorld engine {what} took longer than step_timeout_s={self.step_timeout_s}s "
                f"on {self.game_file}; the episode is over and reset() starts a fresh engine"
            ) from err

    # ---- protocol extras -----------------------------------------------------------------
    @property
    def admissible_actions(self) -> list[str] | None:
        if self._state is None:
            return None
        commands = self._state["admissible_commands"] or []
        return [c for c in commands if c not in _EXCLUDED_COMMANDS]

    def expert_action(self) -> str | None:
        """The expert's next command: the engine's plan (Fast Downward, full knowledge) with
        expert="planner"; with "search" (default) the same, except that it searches the room for
        objects no observation has shown yet (`expert.py`), so that it can be imitated."""
        if self._state is None or self.done:
            return None
        plan = list(self._state["policy_commands"] or [])
        if self.expert == "planner":
            return plan[0] if plan else None
        return self._searcher.action(plan)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._state = None, None
