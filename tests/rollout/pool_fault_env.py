"""A test-only corridor env that misbehaves on chosen task seeds at turn 2: raises, hangs, or kills
its own process (SIGKILL), as a crashing game engine would. Worker processes and Ray actors import
it by module name, so it lives in a module of its own (tests/rollout is on their path)."""

from __future__ import annotations

import os
import signal
import time

from spear_toy_env import CorridorEnv

from spear_rl.envs.base import StepResult

FAULT_TURN = 2


class FaultyCorridor(CorridorEnv):
    def __init__(self, faults: dict[int, str] | None = None) -> None:
        super().__init__(min_cells=8, max_cells=12)  # long enough to outlast the fault turn
        self.faults = dict(faults or {})  # task seed -> "raise" | "hang" | "kill"
        self.seed = -1

    def _reset(self, seed: int) -> str:
        self.seed = seed
        return super()._reset(seed)

    def _step_action(self, action: str) -> StepResult:
        fault = self.faults.get(self.seed) if self.turns == FAULT_TURN else None
        if fault == "raise":
            raise RuntimeError("corridor engine crashed")
        if fault == "hang":
            time.sleep(60)
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._step_action(action)
