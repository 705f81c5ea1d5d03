"""Intrinsic tool-call reward and invalid-format penalty against hand-computed values (spec §1)."""

import math

import pytest

from spear_rl.algos.rewards import invalid_penalty, toolcall_bonus


@pytest.mark.parametrize(
    ("tool_calls", "expected"),
    [(0, 0.0), (3, 0.3), (10, 1.0), (15, 1.0)],  # min(1, 0.1 K), capped at 1 from K = 10
)
def test_linear_bonus_caps_at_one(tool_calls, expected):
    assert toolcall_bonus(tool_calls, 1.0) == pytest.approx(expected)


def test_linear_bonus_scales_with_the_schedule_weight():
    assert toolcall_bonus(3, 0.5) == pytest.approx(0.15)
    assert toolcall_bonus(15, 0.5) == pytest.approx(0.5)
    assert toolcall_bonus(7, 0.0) == 0.0
    assert toolcall_bonus(4, 1.0, per_call=0.2, cap=0.5) == pytest.approx(0.5)  # min(0.5, 0.8)


def test_flat_if_correct():
    # Correct with tools: the weight itself, whatever K is.
    assert toolcall_bonus(2, 0.8, mode="flat_if_correct", correct=True) == pytest.approx(0.8)
    assert toolcall_bonus(25, 0.8, mode="flat_if_correct", correct=True) == pytest.approx(0.8)
    # Correct without tools: nothing.
    assert toolcall_bonus(0, 0.8, mode="flat_if_correct", correct=True) == 0.0
    # Wrong: the linear bonus, min(1, 0.1 K) * w.
    assert toolcall_bonus(3, 0.8, mode="flat_if_correct", correct=False) == pytest.approx(0.24)
    assert toolcall_bonus(15, 0.8, mode="flat_if_correct", correct=False) == pytest.approx(0.8)
    assert toolcall_bonus(0, 0.8, mode="flat_if_correct", correct=False) == 0.0


def test_bonus_rejects_bad_arguments_with_clear_messages():
    with pytest.raises(ValueError, match="needs correct"):
        toolcall_bonus(2, 1.0, mode="flat_if_correct")
    with pytest.raises(ValueError, match="linear, flat_if_correct"):
        toolcall_bonus(2, 1.0, mode="flat")
    with pytest.raises(ValueError, match="tool_calls must be >= 0"):
        toolcall_bonus(-1, 1.0)


def test_invalid_penalty():
    assert invalid_penalty(1) == pytest.approx(-0.1)
    assert invalid_penalty(3) == pytest.approx(-0.3)
    assert invalid_penalty(2, penalty=0.5) == pytest.approx(-1.0)
    zero = invalid_penalty(0)
    assert zero == 0.0 and math.copysign(1.0, zero) == 1.0  # no "-0.0" in logs
    with pytest.raises(ValueError, match="num_invalid"):
        invalid_penalty(-2)
