"""Self-imitation replay buffer (spec §6) against hand-computed expectations."""

import pickle
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spear_rl.algos.replay import ReplayBuffer, ReplayConfig, ReplayItem

_next_id = iter(range(10**9))


def item(reward=1.0, advantage=1.0, step=1, group_id=0, tool_calls=0, payload=None):
    payload = f"sample-{next(_next_id)}" if payload is None else payload
    return ReplayItem(payload, reward, advantage, step, group_id, tool_calls)


def rewards_of(pairs):
    return [it.reward for it, _ in pairs]


# ---- admission and eviction -------------------------------------------------------------------


def test_admission_needs_advantage_strictly_above_the_threshold():
    buffer = ReplayBuffer(ReplayConfig())
    candidates = [item(advantage=a, payload=a) for a in (0.0, 0.5, -1.0, 1e-9, float("nan"))]
    assert buffer.admit(candidates) == 2
    assert [it.payload for it in buffer.items] == [0.5, 1e-9]

    strict = ReplayBuffer(ReplayConfig(admit_threshold=1.0))
    assert strict.admit([item(advantage=1.0), item(advantage=1.5, payload="kept")]) == 1
    assert [it.payload for it in strict.items] == ["kept"]


def test_require_tool_call():
    buffer = ReplayBuffer(ReplayConfig(require_tool_call=True))
    assert buffer.admit([item(tool_calls=0), item(tool_calls=2, payload="tool")]) == 1
    assert [it.payload for it in buffer.items] == ["tool"]
    relaxed = ReplayBuffer(ReplayConfig())
    assert relaxed.admit([item(tool_calls=0), item(tool_calls=2)]) == 2


def test_age_eviction_at_the_boundary():
    buffer = ReplayBuffer(ReplayConfig(tolerate_steps=5))
    buffer.admit([item(step=10, payload="s10"), item(step=11, payload="s11")])
    buffer.admit([item(step=15, payload="s15")])
    assert buffer.evict_stale(15) == 0  # ages 5, 4, 0: age 5 == W stays
    assert buffer.evict_stale(16) == 1  # ages 6, 5, 1: only the age-6 item goes
    assert [it.payload for it in buffer.items] == ["s11", "s15"]
    assert buffer.stats(16)["last_evicted"] == 1.0
    assert buffer.evict_stale(16) == 0

    no_tolerance = ReplayBuffer(ReplayConfig(tolerate_steps=0))
    no_tolerance.admit([item(step=3), item(step=4, payload="now")])
    assert no_tolerance.evict_stale(4) == 1
    assert [it.payload for it in no_tolerance.items] == ["now"]


def test_capacity_eviction_drops_the_oldest():
    buffer = ReplayBuffer(ReplayConfig(buffer_size=3))
    buffer.admit([item(step=1, payload=p) for p in "abc"])
    assert buffer.admit([item(step=2, payload=p) for p in "de"]) == 2
    assert [it.payload for it in buffer.items] == ["c", "d", "e"]
    assert buffer.stats(2)["last_capacity_evicted"] == 2.0
    buffer.admit([item(step=3, payload=p) for p in "vwxyz"])  # more than B at once
    assert [it.payload for it in buffer.items] == ["x", "y", "z"]
    assert len(buffer) == 3


def test_baseline_history_is_capped_dropping_the_oldest():
    buffer = ReplayBuffer(ReplayConfig(baseline_history=4))
    buffer.record_baselines([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    buffer.record_baselines([4.0, 5.0], [0.4, float("nan")])  # NaN std (group of one) -> 0
    stats = buffer.stats(1)
    assert stats["history_len"] == 4.0
    assert stats["baseline_p50"] == pytest.approx(3.5)  # median of 2, 3, 4, 5
    assert stats["baseline_std_p50"] == pytest.approx(0.25)  # median of 0.2, 0.3, 0.4, 0


def test_record_baselines_rejects_bad_input():
    buffer = ReplayBuffer(ReplayConfig())
    with pytest.raises(ValueError, match="2 group means but 1"):
        buffer.record_baselines([1.0, 2.0], [0.1])
    with pytest.raises(ValueError, match="finite"):
        buffer.record_baselines([float("nan")], [0.1])


# ---- recalibration ----------------------------------------------------------------------------


def test_p50_keeps_rewards_above_the_median_odd_history():
    buffer = ReplayBuffer(ReplayConfig())
    buffer.record_baselines([0.0, 10.0, 2.0], [1.0, 1.0, 1.0])  # median 2.0
    buffer.admit([item(reward=r) for r in (1.0, 2.0, 2.5, 10.0)])
    recal = buffer.recalibrated(step=2)
    assert rewards_of(recal) == [2.5, 10.0]  # R == median is not above it
    assert [a for _, a in recal] == pytest.approx([0.5, 8.0])


def test_p50_keeps_rewards_above_the_median_even_history():
    buffer = ReplayBuffer(ReplayConfig())
    buffer.record_baselines([0.0, 1.0, 4.0, 10.0], [1.0] * 4)  # median (1 + 4) / 2 = 2.5
    buffer.admit([item(reward=r) for r in (2.0, 2.5, 3.0)])
    recal = buffer.recalibrated(step=2)
    assert rewards_of(recal) == [3.0]
    assert recal[0][1] == pytest.approx(0.5)


def test_p50_with_empty_history_uses_a_zero_baseline():
    buffer = ReplayBuffer(ReplayConfig(), use_std=True)
    buffer.admit([item(reward=-1.0), item(reward=0.0), item(reward=1.5)])
    recal = buffer.recalibrated(step=1)
    assert rewards_of(recal) == [1.5]
    assert recal[0][1] == 1.5  # no std division without history


def test_p50_with_std_divides_by_the_median_std():
    buffer = ReplayBuffer(ReplayConfig(), use_std=True)
    buffer.record_baselines([1.0, 1.0, 1.0], [2.0, 4.0, 0.5])  # median std 2.0
    buffer.admit([item(reward=5.0), item(reward=0.5)])
    recal = buffer.recalibrated(step=2)
    assert rewards_of(recal) == [5.0]
    assert recal[0][1] == pytest.approx(4.0 / 2.000001, rel=1e-12)
    plain = ReplayBuffer(ReplayConfig(), use_std=False)
    plain.record_baselines([1.0, 1.0, 1.0], [2.0, 4.0, 0.5])
    plain.admit([item(reward=5.0)])
    assert plain.recalibrated(step=2)[0][1] == pytest.approx(4.0)


def test_decay_recalibration_scales_the_stored_advantage():
    buffer = ReplayBuffer(
        ReplayConfig(recalibration="decay", decay_lambda=0.5, admit_threshold=-1.0)
    )
    buffer.record_baselines([100.0], [1.0])  # ignored by decay
    buffer.admit([item(advantage=2.0), item(advantage=0.4), item(advantage=-0.5)])
    recal = buffer.recalibrated(step=2)
    assert [a for _, a in recal] == pytest.approx([1.0, 0.2])  # the negative one is not kept


# ---- drawing ----------------------------------------------------------------------------------


def filled_buffer(rewards, **cfg):
    buffer = ReplayBuffer(ReplayConfig(**cfg), seed=0)
    buffer.record_baselines([0.0], [1.0])
    buffer.admit([item(reward=r, payload=i) for i, r in enumerate(rewards)])
    return buffer


def test_draw_never_returns_more_than_n_nor_duplicates_and_keeps_items():
    for sampling in ("uniform", "priority"):
        buffer = filled_buffer([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0], sampling=sampling)
        for n in range(0, 12):
            drawn = buffer.draw(n, step=2)
            payloads = [it.payload for it, _ in drawn]
            assert len(drawn) == min(n, 7)  # 7 of the 8 beat the zero baseline
            assert len(set(payloads)) == len(payloads)
            assert 7 not in payloads
            assert payloads == sorted(payloads)  # buffer order
            assert len(buffer) == 8


def test_replay_batch_overrides_n_and_negative_n_is_an_error():
    buffer = filled_buffer([1.0] * 6, replay_batch=3)
    assert len(buffer.draw(10, step=2)) == 3
    assert len(buffer.draw(0, step=2)) == 3
    with pytest.raises(ValueError, match="n >= 0"):
        buffer.draw(-1, step=2)


def test_uniform_sampling_is_even_and_priority_follows_the_advantage():
    # Baseline 0, so A' = R: item 0 has A' = 1 and item 1 has A' = 9.
    draws = 4000
    uniform = filled_buffer([1.0, 9.0], sampling="uniform")
    priority = filled_buffer([1.0, 9.0], sampling="priority")
    uniform_hits = sum(uniform.draw(1, step=2)[0][0].payload == 1 for _ in range(draws))
    priority_hits = sum(priority.draw(1, step=2)[0][0].payload == 1 for _ in range(draws))
    assert 0.45 < uniform_hits / draws < 0.55  # expected 0.5
    assert 0.87 < priority_hits / draws < 0.93  # expected 9 / (1 + 9) = 0.9


def test_priority_without_replacement_prefers_larger_advantages():
    buffer = filled_buffer([1.0, 2.0, 3.0, 4.0], sampling="priority")
    counts = Counter()
    for _ in range(3000):
        counts.update(it.payload for it, _ in buffer.draw(2, step=2))
    assert counts[0] < counts[1] < counts[2] < counts[3]
    assert sum(counts.values()) == 6000


# ---- reference trigger ------------------------------------------------------------------------


def reference_buffer(num_winners, num_losers=3, buffer_size=4, seed=0):
    buffer = ReplayBuffer(ReplayConfig(buffer_size=buffer_size, trigger="reference"), seed=seed)
    buffer.record_baselines([0.0, 1.0, 2.0], [1.0] * 3)  # median 1.0
    winners = [item(reward=5.0, payload=f"w{i}") for i in range(num_winners)]
    losers = [item(reward=0.5, payload=f"l{i}") for i in range(num_losers)]
    buffer.admit(winners + losers)
    return buffer


def test_reference_trigger_waits_for_more_than_one_and_a_half_buffers():
    buffer = reference_buffer(num_winners=6)  # 6 <= 1.5 * 4: no fire
    assert len(buffer) == 9  # no capacity limit in reference mode
    assert buffer.draw(64, step=2) == []
    assert len(buffer) == 9
    assert buffer.stats(2)["reference_fires"] == 0.0


def test_reference_trigger_fires_with_a_power_of_two_subset_and_clears():
    buffer = reference_buffer(num_winners=7)  # 7 > 6: fire with 4 of them
    drawn = buffer.draw(2, step=2)  # n does not limit the reference subset
    payloads = [it.payload for it, _ in drawn]
    assert len(payloads) == 4 and len(set(payloads)) == 4
    assert all(p.startswith("w") for p in payloads)
    assert [a for _, a in drawn] == pytest.approx([4.0] * 4)
    assert len(buffer) == 0
    assert buffer.stats(2)["reference_fires"] == 1.0
    assert buffer.draw(2, step=3) == []

    assert len(reference_buffer(num_winners=25, buffer_size=16).draw(0, step=2)) == 16
    assert len(reference_buffer(num_winners=31, buffer_size=32).draw(0, step=2)) == 0  # 31 <= 48


@pytest.mark.parametrize(
    ("num_winners", "buffer_size", "expected"),
    [
        (16, 4, 4),  # 16 qualify at capacity 4: the subset is capped at the capacity
        (31, 4, 4),
        (13, 8, 8),  # 13 > 12 fires; min(13, 8) = 8
        (25, 12, 8),  # min(25, 12) = 12 is not a power of two: 8
    ],
)
def test_reference_trigger_never_replays_more_than_the_capacity(num_winners, buffer_size, expected):
    drawn = reference_buffer(num_winners=num_winners, buffer_size=buffer_size).draw(0, step=2)
    assert len(drawn) == expected
    assert len({it.payload for it, _ in drawn}) == expected


# ---- stats, config, checkpoints ---------------------------------------------------------------


def test_stats_after_a_step():
    buffer = ReplayBuffer(ReplayConfig(tolerate_steps=5))
    buffer.record_baselines([0.0, 2.0], [1.0, 1.0])  # median 1.0
    buffer.admit([item(reward=3.0, step=4), item(reward=2.0, step=6), item(reward=0.5, step=6)])
    buffer.draw(8, step=7)
    stats = buffer.stats(step=7)
    assert stats["size"] == 3.0
    assert stats["mean_age"] == pytest.approx((3 + 1 + 1) / 3)
    assert stats["max_age"] == 3.0
    assert stats["baseline_p50"] == 1.0
    assert stats["history_len"] == 2.0
    assert stats["last_admitted"] == 3.0
    assert stats["last_drawn"] == 2.0
    assert stats["last_qualifying"] == 2.0
    assert stats["recal_adv_mean"] == pytest.approx(1.5)  # A' = 2.0 and 1.0
    assert stats["recal_adv_min"] == pytest.approx(1.0)
    assert stats["recal_adv_max"] == pytest.approx(2.0)
    empty = ReplayBuffer(ReplayConfig()).stats(step=1)
    assert empty["size"] == 0.0 and empty["mean_age"] == 0.0 and empty["baseline_p50"] == 0.0
    assert all(isinstance(v, float) for v in empty.values())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recalibration": "p90"}, "p50, decay"),
        ({"sampling": "greedy"}, "uniform, priority"),
        ({"trigger": "always"}, "continuous, reference"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"tolerate_steps": -1}, "tolerate_steps"),
        ({"baseline_history": 0}, "baseline_history"),
        ({"decay_lambda": 0.0}, "decay_lambda"),
        ({"decay_lambda": 1.5}, "decay_lambda"),
        ({"replay_batch": -2}, "replay_batch"),
    ],
)
def test_config_errors_name_the_key(changes, message):
    with pytest.raises(ValueError, match=message):
        ReplayConfig(**changes)


def test_load_state_dict_rejects_foreign_dicts():
    with pytest.raises(ValueError, match="missing items"):
        ReplayBuffer(ReplayConfig()).load_state_dict(
            {"history_means": [], "history_stds": [], "rng": {}}
        )


def test_state_dict_is_a_snapshot():
    buffer = filled_buffer([1.0, 2.0])
    state = buffer.state_dict()
    buffer.admit([item(reward=3.0)])
    buffer.record_baselines([5.0], [1.0])
    assert len(state["items"]) == 2 and state["history_means"] == [0.0]


# ---- checkpoint round trip (property) ---------------------------------------------------------

admit_op = st.tuples(
    st.just("admit"),
    st.lists(
        st.tuples(
            st.floats(-2, 12, allow_nan=False),  # reward
            st.floats(-1, 3, allow_nan=False),  # advantage
            st.integers(0, 2),  # tool calls
        ),
        max_size=6,
    ),
)
record_op = st.tuples(
    st.just("record"),
    st.lists(st.tuples(st.floats(-2, 12), st.floats(0, 3)), min_size=1, max_size=4),
)
operation = st.one_of(
    admit_op,
    record_op,
    st.tuples(st.just("draw"), st.integers(0, 6)),
    st.tuples(st.just("evict"), st.none()),
    st.tuples(st.just("next_step"), st.none()),
)
configs = st.builds(
    ReplayConfig,
    buffer_size=st.integers(1, 8),
    tolerate_steps=st.integers(0, 3),
    admit_threshold=st.sampled_from([0.0, 0.5]),
    require_tool_call=st.booleans(),
    baseline_history=st.integers(1, 6),
    recalibration=st.sampled_from(["p50", "decay"]),
    decay_lambda=st.sampled_from([0.5, 1.0]),
    sampling=st.sampled_from(["uniform", "priority"]),
    trigger=st.sampled_from(["continuous", "reference"]),
    replay_batch=st.integers(0, 3),
)


class Runner:
    """Applies operations to a buffer and records what every draw returned."""

    def __init__(self, buffer, step=1):
        self.buffer, self.step, self.uid = buffer, step, 0

    def run(self, ops):
        results = []
        for kind, arg in ops:
            if kind == "admit":
                items = []
                for reward, adv, tools in arg:
                    self.uid += 1
                    items.append(
                        ReplayItem((self.step, self.uid), reward, adv, self.step, 0, tools)
                    )
                results.append(self.buffer.admit(items))
            elif kind == "record":
                self.buffer.record_baselines([m for m, _ in arg], [s for _, s in arg])
            elif kind == "draw":
                drawn = self.buffer.draw(arg, self.step)
                results.append([(it.payload, it.reward, it.step, adv) for it, adv in drawn])
            elif kind == "evict":
                results.append(self.buffer.evict_stale(self.step))
            else:
                self.step += 1
        results.append(self.buffer.stats(self.step))
        return results


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=configs,
    seed=st.integers(0, 2**32 - 1),
    before=st.lists(operation, max_size=25),
    after=st.lists(operation, min_size=1, max_size=25),
    use_std=st.booleans(),
)
def test_state_dict_round_trip_reproduces_future_draws(cfg, seed, before, after, use_std):
    original = Runner(ReplayBuffer(cfg, seed=seed, use_std=use_std))
    original.run(before)
    state = pickle.loads(pickle.dumps(original.buffer.state_dict()))
    restored = Runner(
        ReplayBuffer(cfg, seed=seed + 1, use_std=use_std), step=original.step
    )  # seed must not matter
    restored.buffer.load_state_dict(state)
    restored.uid = original.uid
    assert restored.buffer.stats(original.step) == original.buffer.stats(original.step)
    assert restored.run(after) == original.run(after)
