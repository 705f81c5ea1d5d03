"""The Python API for notebooks and scripts: the same path as `spear train`, without a shell.

    import spear_rl
    result = spear_rl.train("sokoban/spear", {"train.steps": 10}, env=MyEnv, env_kwargs={"size": 6})
    result.run_dir, result.success_before, result.success_after

`build_config` resolves a recipe plus overrides exactly as the command line does (the overrides are
what `--section.key=value` would give, as a nested dict or with dotted keys); `train` runs it with
the trainer the command uses and returns its `TrainResult`.

An env given as an object is named by its import path (`module:Class`), which is what the run's
config.yaml records, and what another process needs to rebuild the env. An object that no other
process can import (defined in a notebook, in `__main__` or inside a function) still trains here,
in this process; the run then says so, since `spear eval` / `--resume` from a shell, and env
workers in other processes, cannot rebuild it: move it into a module to get those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spear_rl.envs.base import Env
from spear_rl.envs.resolve import is_process_local, local_env_name

if TYPE_CHECKING:
    from spear_rl.train.config import Config
    from spear_rl.train.trainer import TrainResult

EnvSpec = str | type[Env] | Callable[..., Env]

NOT_IMPORTABLE_NOTE = (
    "note: env {name!r} is not importable from another process (it lives in __main__ or in a "
    "function), so it runs in this process only: `spear eval`, `--resume` from a shell and env "
    "workers in other processes cannot rebuild it; put it in a module to have those"
)


def build_config(
    recipe: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env: EnvSpec | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    echo: Callable[[str], Any] = print,
) -> Config:
    """A run config: `recipe` (a built-in name or a YAML path; None = the default) + `overrides`
    (nested, or dotted keys such as {"train.steps": 5}) + `env` (a name, an import path, or an
    `Env` subclass / factory function) and its `env_kwargs`."""
    from spear_rl.train.config import deep_merge, load_config

    merged = expand_dotted(overrides or {})
    if env is not None:
        merged = deep_merge(merged, {"env": {"name": env_name(env, echo)}})
    if env_kwargs is not None:
        merged = deep_merge(merged, {"env": {"kwargs": dict(env_kwargs)}})
    return load_config(recipe, merged)


def train(
    recipe: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    config: Config | None = None,
    env: EnvSpec | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    echo: Callable[[str], Any] = print,
) -> TrainResult:
    """Train, as `spear train` does, and return the result (`run_dir`, held-out success before
    and after RL, steps, wall time). Give a recipe and overrides, or a ready `config`."""
    from spear_rl.train.trainer import train as run_training

    if config is None:
        config = build_config(recipe, overrides, env=env, env_kwargs=env_kwargs, echo=echo)
    elif recipe is not None or overrides or env is not None or env_kwargs is not None:
        raise ValueError("give either config= or a recipe with overrides / env, not both")
    check_env_workers(config)
    return run_training(config, echo=echo)


def check_env_workers(config: Config) -> None:
    """Env workers in other processes rebuild envs by import path: refuse one they cannot import."""
    from spear_rl.fields import ConfigError

    workers = getattr(config.env, "workers", "inline")
    if workers != "inline" and is_process_local(config.env.name):
        raise ConfigError(
            f"env.workers={workers} rebuilds each env in another process from its import path, "
            f"and env {config.env.name!r} cannot be imported there (it lives in __main__ or in a "
            "function): move it into a module, or use env.workers=inline"
        )


def env_name(env: EnvSpec, echo: Callable[[str], Any] = print) -> str:
    """The `env.name` for an env given as a string or as an object (see the module docstring)."""
    if isinstance(env, str):
        return env
    name, importable = local_env_name(env)
    if not importable:
        echo(NOT_IMPORTABLE_NOTE.format(name=name))
    return name


def expand_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"train.steps": 5, "algo": {"loss": "vanilla"}} -> {"train": {"steps": 5}, "algo": {...}}."""
    from spear_rl.train.config import deep_merge

    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise ValueError(f"override keys must be strings, got {key!r}")
        node: Any = value.copy() if isinstance(value, dict) else value
        for part in reversed(key.split(".")):
            node = {part: node}
        out = deep_merge(out, node)
    return out
