"""spear-rl: SPEAR (self-imitation with progressive exploration) for agentic RL of LLM agents.

The public API: `Env` / `StepResult` / `ToolEnv` to write environments, `build_config` and `train`
to run from Python (docs/custom-env.md). `train` and `build_config` import torch on first use.
"""

from typing import Any

from spear_rl.envs.base import Env, StepResult
from spear_rl.envs.tool_env import ToolEnv

__version__ = "0.1.0"
__all__ = ["Env", "StepResult", "ToolEnv", "build_config", "train", "__version__"]


def __getattr__(name: str) -> Any:  # lazy: writing an env must not pull in torch
    if name == "build_config":
        from spear_rl.api import build_config

        return build_config
    if name == "train":  # the subpackage, which is callable: spear_rl.train(...) is api.train
        import spear_rl.train

        return spear_rl.train
    raise AttributeError(f"module 'spear_rl' has no attribute {name!r}")
