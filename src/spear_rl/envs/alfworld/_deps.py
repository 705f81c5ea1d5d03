"""Lazy access to the optional `alfworld` package: its data files, vocabularies and the engine.

spear-rl imports without ALFWorld; everything here imports it on first use and turns a missing
install into one actionable line.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

MISSING_MESSAGE = "ALFWorld needs the optional extra: pip install 'spear-rl[alfworld]'"


class AlfWorldMissingError(ImportError):
    """alfworld (or textworld / its planner) is not installed."""


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise AlfWorldMissingError(f"{MISSING_MESSAGE} ({err})") from None


@functools.lru_cache(maxsize=1)
def package_dir() -> Path:
    """Where alfworld is installed, found without importing `alfworld.info` (whose import sets
    ALFWORLD_DATA to a default cache folder as a side effect)."""
    try:
        spec = importlib.util.find_spec("alfworld")
    except ImportError as err:
        raise AlfWorldMissingError(f"{MISSING_MESSAGE} ({err})") from None
    if spec is None or not spec.submodule_search_locations:
        raise AlfWorldMissingError(MISSING_MESSAGE)
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def pddl_domain() -> str:
    """The ALFRED PDDL domain shipped with alfworld (alfworld.info.ALFRED_PDDL_PATH)."""
    return (package_dir() / "data" / "alfred.pddl").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def text_grammar() -> str:
    """The ALFRED text grammar shipped with alfworld (alfworld.info.ALFRED_TWL2_PATH)."""
    return (package_dir() / "data" / "alfred.twl2").read_text(encoding="utf-8")


def layouts_dir() -> Path:
    """Scene layouts: FloorPlanN-objects.json (object types) and -openable.json (receptacles)."""
    return package_dir() / "gen" / "layouts"


def constants() -> ModuleType:
    """alfworld.gen.constants: object vocabularies and which receptacle can hold what."""
    return _import("alfworld.gen.constants")


def default_data_dir() -> Path:
    """The folder alfworld itself falls back to for ALFWORLD_DATA (and sets it to on import)."""
    return Path("~/.cache/alfworld").expanduser()


def engine_modules() -> tuple[ModuleType, ModuleType, type, type]:
    """(textworld, fast_downward, AlfredDemangler, AlfredInfos), importing them on first use."""
    textworld = _import("textworld")
    fast_downward = _import("fast_downward")
    tw_env = _import("alfworld.agents.environment.alfred_tw_env")
    return textworld, fast_downward, tw_env.AlfredDemangler, tw_env.AlfredInfos
