"""Env pools: inline, worker processes and Ray actors give the same episodes; a worker that raises,
hangs or dies costs one episode, is replaced, and the rest of the batch plays on unchanged; closing
leaves no process behind."""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from pool_fault_env import FaultyCorridor
from spear_toy_env import tiny_policy

from spear_rl.envs.pool import EnvSpec, InlinePool, make_env_pool
from spear_rl.rollout import RolloutConfig, run_rollout

HERE = Path(__file__).resolve().parent
BACKENDS = ["process", "ray"]
JUNK = "no tags at all"


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    # Ray's workers import the test envs by module name, as the spawned worker processes do
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *([old] if old else [])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


DEFAULT_PLACEMENT = {"cpus_per_worker": 1.0, "ray_address": ""}


def pool_of(backend, factory, request, timeout_s=30.0, num_workers=2):
    if backend == "ray":
        request.getfixturevalue("ray_runtime")
    # half a CPU per actor: two pools of two actors fit the test runtime's two CPUs
    return make_env_pool(
        backend,
        factory,
        timeout_s=timeout_s,
        num_workers=num_workers,
        cpus_per_worker=0.5,
        ray_address="",
    )


def _response(rng: random.Random, view) -> str:
    """A valid action most of the time, sometimes junk or an inadmissible one."""
    roll = rng.random()
    if roll < 0.1:
        return JUNK
    if roll < 0.2 or not view.admissible_actions:
        return "<think>hmm</think><action>fly away</action>"
    return f"<think>go</think><action>{rng.choice(view.admissible_actions)}</action>"


def _record(call):
    if not call.ok:
        return ("failed", call.failure)
    result = None if call.result is None else dataclasses.asdict(call.result)
    return (dataclasses.asdict(call.view), result)


def drive(pool, seeds, turns, between=None):
    """Play one episode per seed with a seeded scripted policy (one random stream per slot, so a
    failed episode changes no other); return everything the pool answered, per slot."""
    rngs = [random.Random(f"drive-{slot}") for slot in range(len(seeds))]
    records = [[] for _ in seeds]
    views = {}
    for slot, call in enumerate(pool.reset(seeds)):
        records[slot].append(_record(call))
        if call.ok:
            views[slot] = call.view
    for turn in range(turns):
        if between is not None:
            between(turn)
        live = [slot for slot, view in sorted(views.items()) if not view.done]
        if not live:
            break
        responses = [_response(rngs[slot], views[slot]) for slot in live]
        for slot, call in zip(live, pool.step(live, responses), strict=True):
            records[slot].append(_record(call))
            if call.ok:
                views[slot] = call.view
            else:
                del views[slot]
    return records


# ---- same episodes on every backend ----------------------------------------------------------
ENVS = {
    "sokoban": (EnvSpec("sokoban"), list(range(6)), 8),
    "alfworld": (EnvSpec("alfworld", {"num_receptacles": 5}), [0, 1, 2, 3], 4),
}


@functools.cache
def inline_records(env: str):
    spec, seeds, turns = ENVS[env]
    with InlinePool(spec) as pool:
        return drive(pool, seeds, turns)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env", sorted(ENVS))
def test_backends_play_identical_episodes(env, backend, request):
    if env == "alfworld":
        pytest.importorskip("alfworld")
    spec, seeds, turns = ENVS[env]
    reference = inline_records(env)
    with pool_of(backend, spec, request) as pool:
        records = drive(pool, seeds, turns)
        assert pool.take_counters() == {"worker_failures": 0, "workers_replaced": 0}
    assert records == reference
    assert sum(len(r) for r in records) > 2 * len(seeds)  # the episodes did play on
    assert any(r[0] != records[0][0] for r in records[1:])  # different seeds, different games


# ---- faults ---------------------------------------------------------------------------------------
# Four episodes per test, slot i on worker i % 2; the episode in slot 1 meets the fault on its second
# step, slot 3 shares its worker (and is rebuilt on the replacement when the worker is lost).
FAULTS = {11: "raise", 41: "hang", 31: "kill"}
FAULT_SLOT = 1
TURNS = 4
# Long enough that a healthy step (or a replacement Ray actor's first) on a loaded machine does not
# time out too (at 2 s one did, beside two other CPU-bound runs), far below the 60 s a hang sleeps.
HANG_TIMEOUT_S = 6.0


def seeds_for(fault: str) -> list[int]:
    base = {"none": 0, "raise": 10, "kill": 30, "hang": 40}[fault]
    return [base + i for i in range(4)]


@functools.cache
def fault_free(seeds: tuple[int, ...]):
    """What the episodes look like when nothing goes wrong (the same games: faults only act)."""
    with InlinePool(FaultyCorridor) as pool:
        return drive(pool, list(seeds), TURNS)


def _fault_pool(backend, request):
    factory = functools.partial(FaultyCorridor, faults=FAULTS)
    pool = pool_of(backend, factory, request, timeout_s=HANG_TIMEOUT_S)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def process_fault_pool(request):
    yield from _fault_pool("process", request)


@pytest.fixture(scope="module")
def ray_fault_pool(ray_runtime, request):
    yield from _fault_pool("ray", request)


@pytest.fixture
def shared_pools(request):
    """One pool per backend for the fault tests (starting Ray actors costs seconds)."""

    def get(backend):
        pool = request.getfixturevalue(f"{backend}_fault_pool")
        pool.take_counters()
        return pool

    return get


def check_one_episode_lost(records, fault, reason_start):
    reference = fault_free(tuple(seeds_for(fault)))
    lost = records[FAULT_SLOT]
    assert lost[:2] == reference[FAULT_SLOT][:2]  # reset and the first step played normally
    assert lost[2][0] == "failed" and lost[2][1].startswith(reason_start), lost[2]
    assert len(lost) == 3  # the episode is over
    for slot, record in enumerate(records):
        if slot != FAULT_SLOT:
            assert record == reference[slot]
    assert len(reference[3]) == TURNS + 1  # slot 3 played every turn, on the faulty worker too


@pytest.mark.parametrize("backend", ["inline", *BACKENDS])
def test_rollouts_through_a_pool_are_token_identical(backend, shared_pools):
    model, tokenizer = tiny_policy()
    cfg = RolloutConfig(group_size=2, max_turns=3, max_response_tokens=12)
    seeds = seeds_for("none")[:3]
    reference = run_rollout(model, tokenizer, FaultyCorridor, seeds, cfg, seed=3)
    pool = InlinePool(FaultyCorridor) if backend == "inline" else shared_pools(backend)
    for _ in range(2):  # a pool serves one rollout after another
        got = run_rollout(model, tokenizer, pool, seeds, cfg, seed=3)
        assert [dataclasses.asdict(t) for t in got.trajectories] == [
            dataclasses.asdict(t) for t in reference.trajectories
        ]
        assert got.env_stats == {"env/worker_failures": 0.0, "env/workers_replaced": 0.0}
    assert len(reference.samples) >= len(seeds) * cfg.group_size  # the episodes did play


@pytest.mark.parametrize("backend", ["inline", *BACKENDS])
def test_an_env_that_raises_ends_only_its_episode(backend, shared_pools):
    factory = functools.partial(FaultyCorridor, faults=FAULTS)
    pool = InlinePool(factory) if backend == "inline" else shared_pools(backend)
    records = drive(pool, seeds_for("raise"), TURNS)
    assert pool.take_counters() == {"worker_failures": 1, "workers_replaced": 0}
    check_one_episode_lost(records, "raise", "env_error: RuntimeError: corridor engine crashed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hung_worker_is_replaced(backend, shared_pools):
    pool = shared_pools(backend)
    before = pool.worker_pids()
    started = time.monotonic()
    records = drive(pool, seeds_for("hang"), TURNS)
    assert time.monotonic() - started < 30  # not the 60 s the env sleeps
    assert pool.take_counters() == {"worker_failures": 1, "workers_replaced": 1}
    after = pool.worker_pids()
    assert after[0] == before[0] and after[1] != before[1]
    _wait_gone(before[1])
    check_one_episode_lost(records, "hang", "env_timeout")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_killed_mid_step_is_replaced(backend, shared_pools):
    """The env SIGKILLs its own process in the middle of a step, as a crashing engine would."""
    pool = shared_pools(backend)
    records = drive(pool, seeds_for("kill"), TURNS)
    assert pool.take_counters() == {"worker_failures": 1, "workers_replaced": 1}
    check_one_episode_lost(records, "kill", "env_worker_died")


def test_a_ray_actor_killed_between_steps_is_replaced(shared_pools, ray_runtime):
    ray = ray_runtime
    pool = shared_pools("ray")
    victim = pool.actors()[1]

    def kill(turn):
        if turn != 1:
            return
        ray.kill(victim)
        deadline = time.monotonic() + 15
        while True:  # ray.kill returns at once; wait until the actor is gone for sure
            try:
                ray.get(victim.handle.remote("ping", -1, None))
            except ray.exceptions.RayActorError:
                return
            assert time.monotonic() < deadline, "ray.kill did not stop the actor"
            time.sleep(0.05)

    records = drive(pool, seeds_for("none"), TURNS, between=kill)
    assert pool.take_counters() == {"worker_failures": 1, "workers_replaced": 1}
    # the first job sent to the dead actor was slot 1's second step: that episode is lost
    check_one_episode_lost(records, "none", "env_worker_died: the Ray actor is gone")


def test_a_process_killed_while_idle_is_replaced_without_losing_an_episode(shared_pools):
    pool = shared_pools("process")
    victim = pool.process_ids()[1]

    def kill(turn):
        if turn == 2:
            os.kill(victim, signal.SIGKILL)
            _wait_gone(victim, check=_running)  # the pool reaps it when it looks

    records = drive(pool, seeds_for("none"), TURNS, between=kill)
    assert pool.take_counters() == {"worker_failures": 0, "workers_replaced": 1}
    assert records == fault_free(tuple(seeds_for("none")))  # the killed worker's episodes too


# ---- shutdown -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_close_leaves_no_process_behind(backend, request):
    pool = pool_of(backend, FaultyCorridor, request)
    drive(pool, seeds_for("none"), 1)
    pids = pool.worker_pids()
    assert all(_alive(pid) for pid in pids) and os.getpid() not in pids
    pool.close()
    for pid in pids:
        _wait_gone(pid)
    with pytest.raises(RuntimeError, match="closed"):
        pool.step([0], ["<action>left</action>"])


def test_a_round_cut_short_by_ctrl_c_leaves_a_working_pool(monkeypatch):
    def interrupted(*_):
        raise KeyboardInterrupt

    with make_env_pool(
        "process", FaultyCorridor, timeout_s=30.0, num_workers=2, **DEFAULT_PLACEMENT
    ) as pool:
        pool.reset(seeds_for("none"))
        with monkeypatch.context() as patch:
            patch.setattr(pool, "_poll", interrupted)
            with pytest.raises(KeyboardInterrupt):
                pool.step([0, 1], ["<action>left</action>"] * 2)
        # the next rollout is not confused by the cut round's late answers
        assert drive(pool, seeds_for("none"), TURNS) == fault_free(tuple(seeds_for("none")))
        pids = pool.worker_pids()
        monkeypatch.setattr(pool, "_poll", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.step([0, 1], ["<action>left</action>"] * 2)
    for pid in pids:  # closing right after a cut round stops the workers all the same
        _wait_gone(pid)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'spear-rl\[ray\]'"):
        make_env_pool("ray", FaultyCorridor, timeout_s=1.0, num_workers=0, **DEFAULT_PLACEMENT)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(KeyError, match="inline, process, ray"):
        make_env_pool("threads", FaultyCorridor, timeout_s=1.0, num_workers=0, **DEFAULT_PLACEMENT)


def _alive(pid: int) -> bool:
    """Running, or a zombie nobody reaped yet (both count as left behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _running(pid: int) -> bool:
    """Running (not a zombie waiting for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, check=_alive) -> None:
    deadline = time.monotonic() + 15
    while check(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not check(pid)
