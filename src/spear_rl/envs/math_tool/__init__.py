"""Math with a code interpreter: the sandboxed Python tool, the `math_tool` env and its data.

Importing this package registers the env: `make_env("math_tool", dataset="arith", difficulty=2)`.
"""

from spear_rl.envs.math_tool.data import MathDataError, MathProblem, load_problems
from spear_rl.envs.math_tool.env import MathToolEnv
from spear_rl.envs.math_tool.sandbox import (
    SandboxLimits,
    ToolResult,
    isolation_level,
    run_code,
    run_code_batch,
    submit_code,
)
from spear_rl.envs.math_tool.verify import answers_match

__all__ = [
    "MathDataError",
    "MathProblem",
    "MathToolEnv",
    "SandboxLimits",
    "ToolResult",
    "answers_match",
    "isolation_level",
    "load_problems",
    "run_code",
    "run_code_batch",
    "submit_code",
]
