"""ALFWorld: household tasks on the real ALFWorld engine, with tasks generated from seeds.

Importing this package registers the "alfworld" env and needs nothing beyond spear-rl; the engine
(`pip install 'spear-rl[alfworld]'`) is imported when an episode starts.
"""

from spear_rl.envs.alfworld._deps import AlfWorldMissingError
from spear_rl.envs.alfworld.env import SYSTEM_PROMPT, WIN_REWARD, AlfWorldEnv
from spear_rl.envs.alfworld.generate import (
    GOAL_TEMPLATES,
    TASK_TYPES,
    game_json,
    generate_task,
    write_game,
)

__all__ = [
    "GOAL_TEMPLATES",
    "SYSTEM_PROMPT",
    "TASK_TYPES",
    "WIN_REWARD",
    "AlfWorldEnv",
    "AlfWorldMissingError",
    "game_json",
    "generate_task",
    "write_game",
    "write_games",
]


def __getattr__(name: str):
    # imported on demand so that `python -m spear_rl.envs.alfworld.games` runs it only once
    if name == "write_games":
        from spear_rl.envs.alfworld.games import write_games

        return write_games
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
