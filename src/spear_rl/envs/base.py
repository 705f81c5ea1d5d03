"""The environment protocol every env family implements, and the env registry.

An env is text in, text out; it knows nothing of models or torch. The rollout passes the model's raw
response to `step`; the env parses it (`parse_action`, tagged `<action>` by default) so that envs
with their own formats (math tool calls) need no special case in the rollout.
"""

from __future__ import annotations

import concurrent.futures
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from spear_rl.envs.parsing import parse_tagged_action
from spear_rl.registry import Registry

# Task seeds: training draws from [0, EVAL_SEED_OFFSET), held-out evaluation from
# [EVAL_SEED_OFFSET, 2 * EVAL_SEED_OFFSET). Every env builds its task deterministically from the seed.
EVAL_SEED_OFFSET = 1_000_000

INVALID_ACTION_FEEDBACK = (
    "Invalid response: reply with your reasoning in <think>...</think> and exactly one action in "
    "<action>...</action>."
)


@dataclass
class StepResult:
    observation: str
    reward: float
    done: bool
    # Keys every env sets: "valid" (bool: format parsed and action accepted by the env),
    # "tool_call" (bool: counts toward K_tau), "won" (bool).
    info: dict[str, Any] = field(default_factory=dict)


class Env(ABC):
    """One episode at a time. Subclasses implement `_reset` and `_step_action`."""

    #: a label for the family ("sokoban", ...); configs name an env by `env.name` (a registered
    #: name, an entry point or an import path, see envs/resolve.py), not by this attribute
    name: str = "env"
    #: role of observations after the first in the `whole` layout ("user" or "tool")
    observation_role: str = "user"
    #: system prompt: what the agent is and the response format it must use
    system_prompt: str = ""
    #: env reward of a turn without a valid action. An env that charges every move a time cost
    #: charges it here too; otherwise an invalid reply is a free no-op that RL learns to prefer.
    invalid_turn_reward: float = 0.0
    #: feedback (the next message in the `whole` layout) after a response without an action
    invalid_feedback: str = INVALID_ACTION_FEEDBACK

    def __init__(self) -> None:
        self.task: str = ""  # the instruction for this episode
        self.observation: str = ""  # the current raw observation (also the GiGPO anchor)
        self.won: bool = False
        self.done: bool = False
        self.turns: int = 0

    # ---- protocol -------------------------------------------------------------------------
    def reset(self, seed: int) -> str:
        """Start the episode for task instance `seed`; return the first observation."""
        self.won, self.done, self.turns = False, False, 0
        self.observation = self._reset(seed)
        return self.observation

    def step(self, response: str) -> StepResult:
        """Apply a raw model response. A response without a parseable action is an invalid turn."""
        if self.done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        self.turns += 1
        action = self.parse_action(response)
        if action is None:
            info = {"valid": False, "tool_call": False, "feedback": self.invalid_feedback}
            result = StepResult(self.observation, self.invalid_turn_reward, False, info)
        else:
            result = self._step_action(action)
            result.info.setdefault("valid", True)
            result.info.setdefault("tool_call", bool(result.info["valid"]))
        result.info["won"] = self.won
        result.info.setdefault("action", action)
        # False: a void turn for Dr.BoT's incomplete filter (the math env also marks malformed calls)
        result.info.setdefault("parsed", action is not None)
        self.done = result.done
        if result.info["valid"]:
            self.observation = result.observation
        return result

    def parse_action(self, response: str) -> str | None:
        return parse_tagged_action(response)

    def prompt_setup(self, template_renders_tools: bool) -> tuple[str, list[dict] | None]:
        """(system prompt, tool schemas for the chat template); tool envs (ToolEnv) override it."""
        return self.system_prompt, None

    @property
    def admissible_actions(self) -> list[str] | None:
        """Actions the env accepts now, when it can list them (None otherwise)."""
        return None

    @property
    def anchor(self) -> str:
        """The raw current observation; identical anchors within a group form a GiGPO step group."""
        return self.observation

    @property
    def tokenizer_terms(self) -> tuple[str, ...]:
        """Strings a tokenizer trained from scratch on this env should keep whole (catalogue ids):
        the tiny policy then copies one in a single look-up instead of one per character."""
        return ()

    def expert_action(self) -> str | None:
        """A next action of an expert plan from the current state, when the env has one."""
        return None

    def format_action(self, action: str, thought: str = "") -> str:
        """Render a plain action as a well-formed model response (used for SFT targets)."""
        return f"<think>{thought}</think><action>{action}</action>"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""

    # ---- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _reset(self, seed: int) -> str: ...

    @abstractmethod
    def _step_action(self, action: str) -> StepResult:
        """Apply a parsed action. Set self.won; return info["valid"]=False for inadmissible actions."""


ENVS: Registry[type[Env]] = Registry("environment")


def register_env(name: str):
    return ENVS.register(name)


def make_env(name: str, **kwargs: Any) -> Env:
    """Build an env from a registered name, an installed `spear_rl.envs` entry point, or an import
    path `package.module:Class` (see envs/resolve.py); `kwargs` go to its constructor."""
    from spear_rl.envs.resolve import build_env

    return build_env(name, kwargs)


def import_builtin_envs() -> None:
    import importlib

    for module in ("sokoban", "alfworld", "webshop", "math_tool"):
        try:
            importlib.import_module(f"spear_rl.envs.{module}")
        except ModuleNotFoundError as err:
            # only our own missing module is tolerated; a missing optional dep raises on use
            if err.name != f"spear_rl.envs.{module}":
                raise


class EnvTimeoutError(RuntimeError):
    pass


_TIMEOUT_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="env")


def call_with_timeout(fn, *args: Any, timeout_s: float, **kwargs: Any) -> Any:
    """Run fn with a wall-clock limit (for engines that can hang); raises EnvTimeoutError."""
    future = _TIMEOUT_POOL.submit(fn, *args, **kwargs)
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError as err:
        raise EnvTimeoutError(
            f"environment call {getattr(fn, '__name__', fn)} exceeded {timeout_s}s"
        ) from err
