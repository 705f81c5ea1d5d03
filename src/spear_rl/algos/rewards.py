"""Reward terms SPEAR adds to the environment reward (spec §1).

- The intrinsic tool-call reward b = min(cap, per_call * K) * w(t) rewards using tools early in
  training (w(t) comes from `schedules.toolcall_weight`).
- The invalid-format penalty charges each turn whose response had no parseable action.
"""

from __future__ import annotations

from dataclasses import dataclass

from spear_rl.algos.schedules import TOOLCALL_SCHEDULES
from spear_rl.fields import Settings, setting

BONUS_MODES = ("linear", "flat_if_correct")


@dataclass
class RewardConfig(Settings):
    """Reward terms SPEAR adds: the `algo` section's reward keys (spec §1)."""

    section = "algo"

    invalid_penalty: float = setting(0.1, "subtracted per invalid turn", ge=0)
    toolcall_schedule: str = setting(
        "cosine",
        "w(t) of the tool-call reward: none = 0, constant = 1, cosine = decay(t; T_tc)",
        choices=TOOLCALL_SCHEDULES,
    )
    toolcall_steps: int = setting(200, "T_tc: the cosine w(t) reaches 0 here", ge=0)
    toolcall_count_invalid: bool = setting(
        False, "count every turn as a tool call, valid or not (the reference)"
    )
    toolcall_bonus_mode: str = setting(
        "linear",
        "linear: min(1, 0.1K) w; flat_if_correct: w for a correct answer that used a tool",
        choices=BONUS_MODES,
    )


def toolcall_bonus(
    tool_calls: int,
    weight: float,
    *,
    mode: str = "linear",
    correct: bool | None = None,
    per_call: float = 0.1,
    cap: float = 1.0,
) -> float:
    """Intrinsic reward for K = `tool_calls` tool calls at schedule weight `weight` = w(t).

    `linear`: min(cap, per_call * K) * w. `flat_if_correct` (the Qwen3 math recipe): a correct answer
    earns w flat if it used any tool (0 without tools); a wrong answer earns the linear bonus.
    """
    if tool_calls < 0:
        raise ValueError(f"tool_calls must be >= 0, got {tool_calls}")
    if mode not in BONUS_MODES:
        raise ValueError(f"unknown bonus mode {mode!r}; choose one of: {', '.join(BONUS_MODES)}")
    linear = min(cap, per_call * tool_calls) * weight
    if mode == "linear":
        return linear
    if correct is None:
        raise ValueError("bonus mode 'flat_if_correct' needs correct=True/False for the answer")
    if correct:
        return weight if tool_calls > 0 else 0.0
    return linear


def invalid_penalty(num_invalid: int, penalty: float = 0.1) -> float:
    """Reward added for `num_invalid` turns without a parseable action: -penalty per turn."""
    if num_invalid < 0:
        raise ValueError(f"num_invalid must be >= 0, got {num_invalid}")
    return 0.0 - penalty * num_invalid  # 0.0 - ... keeps zero positive (logs show 0.0, not -0.0)
