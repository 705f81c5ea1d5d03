"""The Sokoban environment: push every box onto a target in a small generated room.

Rewards follow the classic gym-sokoban: -0.1 per valid move (a bump into a wall included), +1 for a
box pushed onto a target, -1 for a box pushed off one, +10 when every box is on a target (the
episode ends, won). A turn without a valid move also costs -0.1: it spends the turn all the same,
and when it was free, RL (GRPO on the tiny policy) learned within 4 steps to stop moving by writing
invalid replies, which avoid both the step cost and box-off-target penalties. The episode also
ends after `max_steps` valid moves. Rooms, the text rendering
and the solver live in `sokoban_gen`; this file is the game loop behind the `Env` protocol.
"""

from __future__ import annotations

from spear_rl.envs.base import Env, StepResult, register_env
from spear_rl.envs.sokoban_gen import (
    DEFAULT_MIN_SOLUTION_MOVES,
    LEGEND,
    MOVES,
    SokobanState,
    apply_move,
    check_room_settings,
    generate_puzzle,
    render,
    solve,
)

STEP_PENALTY = -0.1
BOX_ON_TARGET_REWARD = 1.0
BOX_OFF_TARGET_PENALTY = -1.0
SOLVED_REWARD = 10.0

TASK = "Push every box (X) onto a target (O) by moving up, down, left or right."
SYSTEM_PROMPT = (
    "You are playing Sokoban on a grid. You move one cell up, down, left or right per turn; walking "
    "into a box pushes it one cell if the cell behind it is free. Boxes cannot be pulled, and a box "
    "pushed into a corner is stuck. The goal is to push every box onto a target. "
    f"Symbols: {LEGEND}. Rows are listed top to bottom. Answer with your reasoning and exactly one "
    "move: <think>...</think><action>up|down|left|right</action>"
)


@register_env("sokoban")
class SokobanEnv(Env):
    """Sokoban with rooms generated from the seed; observation = the rendered grid."""

    name = "sokoban"
    system_prompt = SYSTEM_PROMPT
    invalid_turn_reward = STEP_PENALTY

    def __init__(
        self,
        size: int = 6,
        num_boxes: int = 1,
        gen_steps: int = 30,
        max_steps: int = 30,
        min_solution_moves: int = DEFAULT_MIN_SOLUTION_MOVES,
    ) -> None:
        super().__init__()
        check_room_settings(size, num_boxes, gen_steps, min_solution_moves)
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"sokoban max_steps must be a positive int, got {max_steps!r}")
        self.size, self.num_boxes, self.gen_steps = size, num_boxes, gen_steps
        self.max_steps, self.min_solution_moves = max_steps, min_solution_moves
        self.state: SokobanState | None = None
        self.moves = 0  # valid moves this episode (wall bumps included)
        # remaining optimal plan per state seen this episode (a suffix of a plan stays optimal)
        self._plans: dict[SokobanState, tuple[str, ...] | None] = {}

    # ---- episode start ---------------------------------------------------------------------
    def _reset(self, seed: int) -> str:
        puzzle = generate_puzzle(
            seed, self.size, self.num_boxes, self.gen_steps, self.min_solution_moves
        )
        return self._start(puzzle.state, puzzle.solution)

    def reset_to_state(self, state: SokobanState) -> str:
        """Start an episode from a given unsolved room (hand-built rooms in tests, SFT data)."""
        if state.solved:
            raise ValueError("the room is already solved: every box is on a target")
        self.won, self.done, self.turns = False, False, 0
        self.observation = self._start(state, None)
        return self.observation

    def _start(self, state: SokobanState, plan: tuple[str, ...] | None) -> str:
        self.task = TASK
        self.state, self.moves = state, 0
        self._plans = {}
        if plan is not None:
            self._remember_plan(state, plan)
        return render(state)

    # ---- game loop -------------------------------------------------------------------------
    def _step_action(self, action: str) -> StepResult:
        if self.state is None:
            raise RuntimeError("step() called before reset()")
        direction = action.strip().lower()
        if direction not in MOVES:
            feedback = f"Invalid action {action[:40]!r}: answer with one of up, down, left, right."
            info = {"valid": False, "tool_call": False, "feedback": feedback}
            return StepResult(self.observation, self.invalid_turn_reward, False, info)
        before = self.state
        after = apply_move(before, direction)
        self.state = after
        self.moves += 1
        reward = STEP_PENALTY
        # a move pushes at most one box, so the count changes by -1, 0 or +1
        gained = after.boxes_on_targets - before.boxes_on_targets
        if gained > 0:
            reward += BOX_ON_TARGET_REWARD
        elif gained < 0:
            reward += BOX_OFF_TARGET_PENALTY
        if after.solved:
            self.won = True
            reward += SOLVED_REWARD
        done = self.won or self.moves >= self.max_steps
        info = {"valid": True, "tool_call": True, "moved": after != before}
        return StepResult(render(after), reward, done, info)

    @property
    def admissible_actions(self) -> list[str]:
        return list(MOVES)

    def expert_action(self) -> str | None:
        """First move of an optimal plan from the current state; None when done or deadlocked."""
        if self.state is None or self.done:
            return None
        if self.state not in self._plans:
            plan = solve(self.state)
            self._remember_plan(self.state, None if plan is None else tuple(plan))
        plan = self._plans[self.state]
        return plan[0] if plan else None

    def _remember_plan(self, state: SokobanState, plan: tuple[str, ...] | None) -> None:
        """Cache the plan for `state` and its suffixes for the states along it."""
        self._plans[state] = plan
        if plan is None:
            return
        for k, direction in enumerate(plan[:-1]):
            state = apply_move(state, direction)
            self._plans.setdefault(state, plan[k + 1 :])


def make_sokoban(seed: int, **kwargs: int) -> SokobanEnv:
    """A SokobanEnv (kwargs as in its constructor) already reset to the room of `seed`."""
    env = SokobanEnv(**kwargs)
    env.reset(seed)
    return env
