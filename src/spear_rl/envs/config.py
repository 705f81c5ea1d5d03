"""Which environment family a run trains on: the `env` section of the run config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spear_rl.fields import Settings, setting


@dataclass
class EnvConfig(Settings):
    """The environment family and its constructor arguments."""

    section = "env"

    name: str = setting(
        "sokoban",
        "env family: sokoban, alfworld, webshop, webshop_http, math_tool, the name an installed "
        "package registers (entry point group spear_rl.envs), or an import path package.module:Class",
    )
    kwargs: dict[str, Any] = setting(
        {}, "passed to the env class; --env.kwargs.K=V sets one (a new env.name starts afresh)"
    )
