"""A test-only env: walk a corridor to its exit. Small, deterministic, with an expert and failure knobs.

Registered as "test-corridor". Imported by the rollout, model and SFT tests (tests/conftest.py puts
this folder on sys.path).
"""

from __future__ import annotations

import random
import time

from spear_rl.envs.base import ENVS, Env, StepResult, register_env

ACTIONS = ["left", "right"]


class CorridorEnv(Env):
    name = "test-corridor"
    system_prompt = (
        "You walk along a corridor of numbered cells. Reply with <think>...</think> and then one "
        "action, left or right, in <action>...</action>."
    )

    # crash_on_turn / hang_on_turn: raise / sleep inside the engine from the Nth step on (1-based)
    def __init__(
        self,
        min_cells: int = 3,
        max_cells: int = 6,
        crash_on_turn: int | None = None,
        hang_on_turn: int | None = None,
        hang_seconds: float = 5.0,
        observation_role: str = "user",
    ) -> None:
        super().__init__()
        self.min_cells, self.max_cells = min_cells, max_cells
        self.crash_on_turn, self.hang_on_turn, self.hang_seconds = (
            crash_on_turn,
            hang_on_turn,
            hang_seconds,
        )
        self.observation_role = observation_role
        self.cells = self.position = self.exit = 0

    def _reset(self, seed: int) -> str:
        rng = random.Random(seed)
        self.cells = rng.randint(self.min_cells, self.max_cells)
        self.exit = rng.choice([0, self.cells - 1])
        self.position = rng.choice([c for c in range(self.cells) if c != self.exit])
        self.task = f"Reach the exit at cell {self.exit}."
        return self._describe()

    def _describe(self) -> str:
        return f"You are at cell {self.position} of {self.cells}."

    def _step_action(self, action: str) -> StepResult:
        if self.crash_on_turn is not None and self.turns >= self.crash_on_turn:
            raise RuntimeError("corridor engine crashed")
        if self.hang_on_turn is not None and self.turns >= self.hang_on_turn:
            time.sleep(self.hang_seconds)
        if action not in ACTIONS:
            info = {"valid": False, "feedback": f"{action!r} is not an action here."}
            return StepResult(self.observation, 0.0, False, info)
        step = -1 if action == "left" else 1
        self.position = min(max(self.position + step, 0), self.cells - 1)
        if self.position == self.exit:
            self.won = True
            return StepResult("You reached the exit.", 10.0, True, {})
        return StepResult(self._describe(), 0.0, False, {})

    @property
    def admissible_actions(self) -> list[str] | None:
        return list(ACTIONS)

    def expert_action(self) -> str | None:
        return "left" if self.exit < self.position else "right"


class EndsEarly(CorridorEnv):
    """Ends after (task seed % 3) + 1 turns whatever the model says (rows end at different turns);
    it echoes the reply so the next prompt differs from row to row."""

    def _reset(self, seed: int) -> str:
        self.last_turn = seed % 3 + 1
        return super()._reset(seed)

    def step(self, response: str) -> StepResult:
        result = super().step(response)
        if self.turns >= self.last_turn:
            result.done = True
            self.done = True
        return result


if "test-corridor" not in ENVS:
    register_env("test-corridor")(CorridorEnv)


def corridor_corpus() -> list[str]:
    """Texts to train a tiny tokenizer for the corridor env (what sft_corpus_texts would give)."""
    from spear_rl.train.sft import sft_corpus_texts

    return list(sft_corpus_texts(CorridorEnv, range(32)))


_POLICY_CACHE: dict = {}


def tiny_policy(seed: int = 0):
    """(model, tokenizer): the tiny default policy for the corridor env, built once per process."""
    from spear_rl.models import ModelConfig, load_policy

    if seed not in _POLICY_CACHE:
        _POLICY_CACHE[seed] = load_policy(ModelConfig(), corpus=corridor_corpus, seed=seed)
    return _POLICY_CACHE[seed]
