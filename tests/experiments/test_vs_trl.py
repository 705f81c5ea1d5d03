"""benchmarks/vs_trl.py's bookkeeping (the measurements themselves need TRL and minutes): the flags a
measurement's child process gets, and the per-layout summary of interleaved pairs."""

import pytest


@pytest.fixture(scope="module")
def vs_trl(load_benchmark):
    return load_benchmark("vs_trl")


def test_a_child_gets_the_parents_settings_and_its_layout(vs_trl):
    parent = vs_trl.parse_args(["--steps", "4", "--gradient-checkpointing", "--threads", "2"])
    assert parent.pairs >= 7 and parent.layout_list == ["inline", "system"]
    parent.prompt_layout = "inline"
    child = vs_trl.parse_args(["--side", "spear", *vs_trl.forwarded_flags(parent)])
    for name in vs_trl.SHARED_FLAGS:
        assert getattr(child, name) == getattr(parent, name), name
    assert child.gradient_checkpointing and not child.no_prefix_sharing


def test_each_pair_gives_one_ratio_and_the_summary_is_its_median_and_range(vs_trl):
    def side(step, generate, update):
        return {
            "median_step_seconds": step,
            "median_generate_seconds": generate,
            "median_update_seconds": update,
            "completion_tokens_mean": [9.0, 10.0],
        }

    pairs = [
        {"trl": side(0.4, 0.1, 0.3), "spear": side(0.2, 0.1, 0.1)},  # 2.0x
        {"trl": side(0.9, 0.3, 0.6), "spear": side(0.6, 0.3, 0.2)},  # 1.5x (a loaded pair)
        {"trl": side(0.3, 0.1, 0.2), "spear": side(0.3, 0.1, 0.1)},  # 1.0x
    ]
    summary = vs_trl.layout_summary(pairs)
    ratio = summary["ratio_trl_over_spear"]
    assert (ratio["median"], ratio["min"], ratio["max"], ratio["n"]) == (1.5, 1.0, 2.0, 3)
    assert summary["trl"]["step_seconds"]["median"] == 0.4
    assert summary["spear"]["update_seconds"]["max"] == 0.2
    assert summary["spear"]["completion_tokens_mean"] == 9.5


def test_too_few_steps_to_time_is_refused(vs_trl):
    with pytest.raises(SystemExit):
        vs_trl.parse_args(["--steps", "1", "--skip-first", "1"])
