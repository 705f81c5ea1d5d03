"""The real ALFWorld engine for one env: TextWorld's PDDL backend wrapped the way ALFWorld does it.

`textworld.start(path, EnvInfos(won, admissible_commands, policy_commands, extras=["gamefile"]),
wrappers=[AlfredDemangler(), AlfredInfos])` plays a `.tw-pddl` game: it prints ALFWorld's text,
lists the admissible commands and re-plans an expert plan (Fast Downward) after every step.

Engine facts this module works around:
- every started engine dlopens a private copy of Fast Downward's library (about 33 MB) that
  cannot be unloaded (`fast_downward.close_lib` on a second copy makes the interpreter segfault
  at exit), so an `AlfWorldEngine` reuses its engine for every game (`load`), and `close` (or
  garbage collection) hands the engine to a process-wide pool that the next `AlfWorldEngine`
  takes from: the process holds as many engines as envs were ever open at once, never more;
- translating PDDL rewrites `sys.argv` and captures `sys.stdout` process-wide, and the grammar
  parsers are module-level objects, so all engine calls of the process run under one lock and
  `sys.argv` is restored after each;
- TextWorld interns every proposition and variable it creates in a process-wide dict (the
  `mementos` package) that is never emptied: ~150 KB per new game, a leak over thousands of
  generated games. Their equality and hashing are by value, so the dict is emptied (between
  engine calls) whenever it passes MEMENTO_CACHE_LIMIT entries;
- the engine re-parses the same grammar snippets with TatSu and deep-copies derivation contexts at
  every step, which made a step ~0.2 s in a 10-receptacle room. `install_speedups` memoizes the
  pure parsing functions (returning fresh copies) and the PDDL translation, and copies derivation
  contexts one level deep (their values are only read). The text, commands and plans are
  unchanged (tests compare against an unpatched engine); steps become ~25 ms. Set
  SPEAR_ALFWORLD_ENGINE_SPEEDUPS=0 to keep the engine exactly as installed.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from spear_rl.envs.alfworld._deps import engine_modules

SPEEDUPS_ENV_VAR = "SPEAR_ALFWORLD_ENGINE_SPEEDUPS"
MEMENTO_CACHE_LIMIT = 50_000  # entries; ~200 per generated game
_ENGINE_LOCK = threading.RLock()
_speedups_installed = False


def _memoized_copying(parse: Any) -> Any:
    """`parse`, cached on its arguments; every caller gets its own deep copy (the engine mutates
    parsed symbols while deriving text)."""
    cached = functools.lru_cache(maxsize=4096)(parse)

    def parse_copy(*args: Any, **kwargs: Any) -> Any:
        try:
            return copy.deepcopy(cached(*args, **kwargs))
        except TypeError:  # an unhashable argument: parse without the cache
            return parse(*args, **kwargs)

    parse_copy.__wrapped__ = parse  # type: ignore[attr-defined]
    return parse_copy


def install_speedups() -> bool:
    """Memoize the engine's pure parsing and translation steps (process-wide, once).

    Returns whether the speedups are active (False when SPEAR_ALFWORLD_ENGINE_SPEEDUPS=0).
    """
    global _speedups_installed
    if os.environ.get(SPEEDUPS_ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return _speedups_installed
    with _ENGINE_LOCK:
        if _speedups_installed:
            return True
        engine_modules()  # imports textworld and fast_downward, or raises the missing-extra error
        import fast_downward
        import textworld.envs.pddl.textgen as textgen
        import textworld.logic as logic

        textgen._parse_and_convert = _memoized_copying(textgen._parse_and_convert)
        logic._parse_and_convert = _memoized_copying(logic._parse_and_convert)
        # translation results are only read by the engine; 8 = a few games' worth (load + reset)
        fast_downward.pddl2sas = functools.lru_cache(maxsize=8)(fast_downward.pddl2sas)

        def copy_context(context: dict[str, Any]) -> dict[str, Any]:
            # derivation only adds keys to "variables"/"mapping"; their values are never mutated
            return {
                "state": context["state"],
                "facts": context["facts"],
                "variables": dict(context["variables"]),
                "mapping": dict(context["mapping"]),
                "entity_infos": context["entity_infos"],
            }

        textgen.copy_context = copy_context
        _speedups_installed = True
        return True


def _locked(fn: Any, *args: Any) -> Any:
    """Run an engine call under the process-wide lock, restoring sys.argv (translation clobbers
    it)."""
    with _ENGINE_LOCK:
        argv = list(sys.argv)
        try:
            return fn(*args)
        finally:
            sys.argv[:] = argv


# Started engines no env is using; AlfWorldEngine takes from here before starting a new one.
_IDLE_ENGINES: list[Any] = []


def _trim_interned_facts() -> None:
    """Empty TextWorld's intern table of propositions once it is large (call under the lock)."""
    try:
        from mementos import core as mementos_core
    except ImportError:  # pragma: no cover - a TextWorld without the table
        return
    if len(mementos_core._memento_cache) > MEMENTO_CACHE_LIMIT:
        mementos_core._memento_cache.clear()


def prepare_engine() -> None:
    """Import the engine and install the speedups (about a second, once per process); callers
    that time engine calls do this first so that the import is not timed."""
    engine_modules()
    install_speedups()


def _start_engine(game_file: str) -> Any:
    prepare_engine()
    textworld, _, demangler, infos = engine_modules()
    requested = textworld.EnvInfos(
        won=True, admissible_commands=True, policy_commands=True, extras=["gamefile"]
    )
    return textworld.start(game_file, request_infos=requested, wrappers=[demangler(), infos])


class AlfWorldEngine:
    """One TextWorld PDDL engine, reused across games. Methods return TextWorld game states."""

    def __init__(self) -> None:
        self.game_file: str | None = None
        self._tw_env: Any = None
        self._finalizer: weakref.finalize | None = None

    def load(self, game_file: str | Path) -> None:
        """Load a `.tw-pddl` game (taking an idle engine, or starting one, on first use)."""
        game_file = str(game_file)
        _locked(_trim_interned_facts)
        if self._tw_env is None:
            try:
                tw_env = _IDLE_ENGINES.pop()
            except IndexError:
                self._tw_env = _locked(_start_engine, game_file)
            else:
                _locked(tw_env.load, game_file)
                self._tw_env = tw_env
            # list.append is atomic: safe from a finalizer, which must not wait for locks
            self._finalizer = weakref.finalize(self, _IDLE_ENGINES.append, self._tw_env)
            self._finalizer.atexit = False
        elif game_file != self.game_file:
            _locked(self._tw_env.load, game_file)
        self.game_file = game_file

    def reset(self) -> Any:
        if self._tw_env is None:
            raise RuntimeError("load a game before reset()")
        return _locked(self._tw_env.reset)

    def step(self, command: str) -> Any:
        if self._tw_env is None:
            raise RuntimeError("load a game before step()")
        state, _, _ = _locked(self._tw_env.step, command)
        return state

    @property
    def started(self) -> bool:
        return self._tw_env is not None

    def close(self) -> None:
        """Hand the engine to the idle pool (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self._tw_env, self._finalizer, self.game_file = None, None, None

    def abandon(self) -> None:
        """Forget an engine whose call timed out: its thread may still be running in it, so it
        does not go back to the pool (its library stays mapped until the process exits)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        self._tw_env, self._finalizer, self.game_file = None, None, None
