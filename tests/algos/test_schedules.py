"""Cosine curricula against hand-computed values (spec §0, §1, §6)."""

import math

import pytest

from spear_rl.algos.schedules import decay, replay_coefficient, rise, toolcall_weight

# (1 - cos(pi/4)) / 2 with cos(pi/4) = 0.70710678...
QUARTER_RISE = 0.1464466094067262


def test_rise_at_start_middle_end_and_beyond():
    assert rise(0, 200) == pytest.approx(0.0, abs=1e-12)
    assert rise(50, 200) == pytest.approx(QUARTER_RISE)
    assert rise(100, 200) == pytest.approx(0.5)
    assert rise(200, 200) == pytest.approx(1.0)
    assert rise(350, 200) == pytest.approx(1.0)


def test_decay_at_start_middle_end_and_beyond():
    assert decay(0, 200) == pytest.approx(1.0)
    assert decay(50, 200) == pytest.approx(1.0 - QUARTER_RISE)
    assert decay(100, 200) == pytest.approx(0.5)
    assert decay(200, 200) == pytest.approx(0.0, abs=1e-12)
    assert decay(350, 200) == pytest.approx(0.0, abs=1e-12)


def test_non_positive_total_means_the_curve_is_finished():
    assert rise(3, 0) == 1.0
    assert rise(3, -5) == 1.0
    assert decay(3, 0) == 0.0


def test_negative_steps_clamp_to_the_start():
    assert rise(-10, 100) == pytest.approx(0.0, abs=1e-12)
    assert decay(-10, 100) == pytest.approx(1.0)


def test_toolcall_weight_every_schedule():
    for step in (0, 50, 500):
        assert toolcall_weight(step, "none", 200) == 0.0
        assert toolcall_weight(step, "constant", 200) == 1.0
    assert toolcall_weight(0, "cosine", 200) == pytest.approx(1.0)
    assert toolcall_weight(100, "cosine", 200) == pytest.approx(0.5)
    assert toolcall_weight(200, "cosine", 200) == pytest.approx(0.0, abs=1e-12)
    assert toolcall_weight(201, "cosine", 200) == pytest.approx(0.0, abs=1e-12)
    assert toolcall_weight(5000, "cosine", 200) == pytest.approx(0.0, abs=1e-12)


def test_toolcall_weight_unknown_schedule_lists_the_known_ones():
    with pytest.raises(ValueError, match="none, constant, cosine"):
        toolcall_weight(1, "cosnie", 200)


def test_replay_coefficient_rises_to_kappa_then_stays():
    assert replay_coefficient(0, 2.0, 200) == pytest.approx(0.0, abs=1e-12)
    assert replay_coefficient(50, 2.0, 200) == pytest.approx(2.0 * QUARTER_RISE)
    assert replay_coefficient(100, 2.0, 200) == pytest.approx(1.0)
    assert replay_coefficient(200, 2.0, 200) == pytest.approx(2.0)
    assert replay_coefficient(10_000, 2.0, 200) == pytest.approx(2.0)
    assert replay_coefficient(1, 0.5, 0) == 0.5  # no warm-up: kappa from the first step
    assert math.isclose(replay_coefficient(150, 1.0, 200), (1 - math.cos(0.75 * math.pi)) / 2)
