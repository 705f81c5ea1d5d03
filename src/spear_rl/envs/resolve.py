"""`env.name` -> the env class: a built-in name, an installed plugin, or an import path.

Resolution order for `env.name`:
1. an import path `package.module:Class` (anything with a colon): the module is imported (from
   sys.path, then the current folder, as `python -m` would) and the attribute must be an `Env`
   subclass, or a function returning an `Env`;
2. a name registered in this process (`@register_env`; the built-in families are imported first);
3. an entry point of the group `spear_rl.envs` of an installed distribution, e.g. in its
   pyproject.toml: ``[project.entry-points."spear_rl.envs"] guess = "my_pkg.game:GuessEnv"``.

A (name, kwargs) pair is the whole identity of an env: another process (an env worker) rebuilds the
same env from it. Objects handed to the Python API that no other process can import (a class
defined in a notebook or inside a function) are kept in this process's table (`local_env_name`).
Every failure is one `EnvLoadError` / `UnknownNameError` line that says what to fix.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from spear_rl.envs.base import ENVS, Env, import_builtin_envs
from spear_rl.registry import UnknownNameError

ENTRY_POINT_GROUP = "spear_rl.envs"

# import path -> object, for envs passed as objects that cannot be imported by path (see module doc)
_LOCAL_ENVS: dict[str, Callable[..., Env]] = {}


class EnvLoadError(ValueError):
    """An env name that points somewhere, but not at a usable env; the message says why."""


def build_env(name: str, kwargs: dict[str, Any] | None = None) -> Env:
    """Resolve `name` and call it with `kwargs`, checking them against its signature first."""
    kwargs = dict(kwargs or {})
    factory = resolve_env(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        takes = ", ".join(_parameters(factory)) or "no arguments"
        raise EnvLoadError(
            f"env {name!r} rejects env.kwargs {sorted(kwargs)}: {err} (it takes: {takes})"
        ) from None
    except ValueError:  # no signature to check (a builtin): let the call say it
        pass
    env = factory(**kwargs)
    if not isinstance(env, Env):
        raise EnvLoadError(
            f"env {name!r} returned a {type(env).__name__}, not a spear_rl Env: the factory must "
            "return an instance of an Env subclass"
        )
    return env


def resolve_env(name: str) -> Callable[..., Env]:
    """The class (or factory) that `name` stands for; see the module docstring for the order."""
    if not isinstance(name, str) or not name.strip():
        raise EnvLoadError(f"env.name must be a non-empty string, got {name!r}")
    if ":" in name:
        return _LOCAL_ENVS.get(name) or _import_env(name)
    import_builtin_envs()
    if name in ENVS:
        return ENVS.get(name)
    points = env_entry_points()
    if name in points:
        return _load_entry_point(name, points[name])
    known = ", ".join(known_env_names())
    hint = ""
    if "." in name:
        module, _, attr = name.rpartition(".")
        hint = f" An import path needs a colon: '{module}:{attr}'."
    raise UnknownNameError(
        f"unknown environment {name!r}; known: {known}; or give an import path "
        f"'package.module:EnvClass'.{hint}"
    )


def known_env_names() -> list[str]:
    """Built-in and registered names, plus installed entry points."""
    import_builtin_envs()
    return sorted(set(ENVS.names()) | set(env_entry_points()))


def env_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the `spear_rl.envs` group, by name (one distribution per name)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(point.name)
        if other is not None and other.value != point.value:
            raise EnvLoadError(
                f"two installed packages register the env {point.name!r} "
                f"({other.value} and {point.value}); uninstall one or use an import path"
            )
        found[point.name] = point
    return found


def env_reference(obj: Callable[..., Env]) -> tuple[str, bool]:
    """(import path of a class or function, whether another process can import it by that path)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise EnvLoadError(
            f"cannot name {obj!r} by an import path; pass a class or a function defined with def"
        )
    path = f"{module}:{qualname}"
    importable = module != "__main__" and "<" not in qualname  # <locals>, <lambda>
    if importable:
        try:
            importable = _import_env(path) is obj
        except (EnvLoadError, UnknownNameError):
            importable = False
    return path, importable


def local_env_name(obj: Callable[..., Env]) -> tuple[str, bool]:
    """Register an env class or factory for this process; return (env.name, importable elsewhere)."""
    _check_env_object(obj, repr(obj))
    path, importable = env_reference(obj)
    if not importable:
        _LOCAL_ENVS[path] = obj
    return path, importable


def is_process_local(name: str) -> bool:
    """Whether env `name` can only be built in this process (see `local_env_name`)."""
    return name in _LOCAL_ENVS or name.startswith("__main__:")


def _import_env(path: str) -> Callable[..., Env]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise EnvLoadError(
            f"env.name {path!r}: an import path looks like 'package.module:EnvClass'"
        )
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)  # like `python -m`, the folder you run from (searched last)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise EnvLoadError(
                f"env.name {path!r}: module {module_name!r} not found; install the package that "
                "holds it, or run from the folder that holds it (or add that folder to PYTHONPATH)"
            ) from None
        raise EnvLoadError(
            f"env.name {path!r}: importing {module_name!r} failed: {err} (a dependency is missing)"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EnvLoadError(f"env.name {path!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    _check_env_object(obj, f"env.name {path!r}")
    return obj


def _load_entry_point(name: str, point: importlib.metadata.EntryPoint) -> Callable[..., Env]:
    try:
        obj = point.load()
    except Exception as err:
        raise EnvLoadError(
            f"env {name!r} (entry point {point.value}) failed to load: {type(err).__name__}: {err}"
        ) from None
    _check_env_object(obj, f"env {name!r} (entry point {point.value})")
    return obj


def _check_env_object(obj: Any, where: str) -> None:
    if inspect.isclass(obj):
        if not issubclass(obj, Env):
            raise EnvLoadError(
                f"{where} is the class {obj.__name__}, which is not an Env subclass: subclass "
                "spear_rl.Env (or spear_rl.ToolEnv) and implement _reset and _step_action"
            )
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise EnvLoadError(f"{where}: {obj.__name__} does not implement {missing}")
    elif not callable(obj):
        raise EnvLoadError(
            f"{where} is a {type(obj).__name__}, not an Env subclass or a function returning one"
        )


def _parameters(factory: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return []
