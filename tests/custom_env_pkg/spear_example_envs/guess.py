"""Guess the number: a complete text game for spear-rl."""

import random

from spear_rl import Env, StepResult


class GuessNumber(Env):
    system_prompt = (
        "Find the secret number. Reply with <think>...</think> and then one guess in "
        "<action>...</action>, for example <action>4</action>."
    )

    def __init__(self, high: int = 8) -> None:
        super().__init__()
        self.high = high
        self.secret = self.low = self.top = 0

    def _reset(self, seed: int) -> str:
        self.secret = random.Random(seed).randint(1, self.high)
        self.low, self.top = 1, self.high
        self.task = f"Guess the secret number between 1 and {self.high}."
        return self.describe()

    def describe(self) -> str:
        return f"The number is between {self.low} and {self.top}."

    def _step_action(self, action: str) -> StepResult:
        if not action.isdigit() or not self.low <= int(action) <= self.top:
            feedback = f"{action!r} is not a number from {self.low} to {self.top}."
            return StepResult(self.observation, 0.0, False, {"valid": False, "feedback": feedback})
        guess = int(action)
        if guess == self.secret:
            self.won = True
            return StepResult(f"{guess} is right!", 1.0, True, {})
        if guess < self.secret:
            self.low = guess + 1
        else:
            self.top = guess - 1
        return StepResult(self.describe(), 0.0, False, {})

    @property
    def admissible_actions(self) -> list[str]:
        return [str(n) for n in range(self.low, self.top + 1)]

    def expert_action(self) -> str:
        return str((self.low + self.top) // 2)
