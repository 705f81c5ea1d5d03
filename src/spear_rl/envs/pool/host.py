"""The worker side of the process and Ray pools: one `EnvHost` per worker holds that worker's envs.

A request is `(op, slot, arg)`; `handle` never raises for an env's own error: it answers
`("ok", StepResult | None, EnvView)` or `("error", end_reason, exception | None)`. Only the death
or hang of the whole worker is left to the pool.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from spear_rl.envs.base import Env
from spear_rl.envs.pool.base import EnvView, failure_reason, portable_error

# ops: reset a slot to a new episode; step it; rebuild it by replaying its episode so far (after
# its worker was replaced); close every env; answer the worker's pid (readiness, tests)
RESET, STEP, REPLAY, RELEASE, PING = "reset", "step", "replay", "release", "ping"

Request = tuple[str, int, Any]
Reply = tuple[Any, ...]


class EnvHost:
    def __init__(self, factory: Callable[[], Env]) -> None:
        self.factory = factory
        self.envs: dict[int, Env] = {}

    def handle(self, op: str, slot: int, arg: Any) -> Reply:
        try:
            return ("ok", *self._handle(op, slot, arg))
        except Exception as err:
            return ("error", failure_reason(err), portable_error(err))

    def _handle(self, op: str, slot: int, arg: Any) -> tuple[Any, Any]:
        if op == STEP:
            env = self.envs[slot]
            return env.step(arg), EnvView.of(env)
        if op == RESET:
            env = self._fresh(slot)
            env.reset(int(arg))
            return None, EnvView.of(env)
        if op == REPLAY:
            seed, responses = arg
            env = self._fresh(slot)
            env.reset(int(seed))
            for response in responses:
                env.step(response)
            return None, EnvView.of(env)
        if op == RELEASE:
            for key in list(self.envs):
                self._drop(key)
            return None, None
        if op == PING:
            return os.getpid(), None
        raise ValueError(f"unknown env host op {op!r}")

    def _fresh(self, slot: int) -> Env:
        self._drop(slot)
        env = self.factory()
        self.envs[slot] = env
        return env

    def _drop(self, slot: int) -> None:
        env = self.envs.pop(slot, None)
        if env is not None:
            with contextlib.suppress(Exception):  # best effort, as in the inline pool
                env.close()
