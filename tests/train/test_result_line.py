"""The closing line of `spear train`: before/after with their noise, and a verdict on the change."""

from pathlib import Path

from spear_rl.train.run_dir import TrainResult


def line(before: float, after: float, episodes: int = 64) -> str:
    return TrainResult(Path("run"), before, after, 60.0, 20, episodes).change_line()


def test_a_change_beyond_two_std_of_the_noise_is_called_so():
    text = line(0.125, 0.375)  # stds 0.041 / 0.061: the change is 3.4 std
    assert "0.125 ± 0.041" in text and "0.375 ± 0.061" in text
    assert "change +0.250" in text and "3.4 std" in text and "beyond it" in text


def test_a_small_change_is_within_the_noise():
    text = line(0.125, 0.156)
    assert "within it" in text and "change +0.031" in text


def test_a_drop_is_reported_with_its_sign():
    assert "change -0.250" in line(0.375, 0.125)


def test_certain_outcomes_have_no_noise():
    assert "no change" in line(0.0, 0.0)
    assert "beyond the evaluation noise" in line(0.0, 1.0)
