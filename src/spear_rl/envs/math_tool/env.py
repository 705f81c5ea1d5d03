"""The `math_tool` env: solve a math problem, optionally running Python, answer in `\\boxed{}`.

One episode = one problem. `task` is the question (the rollout shows it in the first message, and in
every per_turn prompt); the first observation is a one-line reminder of the answer format, so the
question is not shown twice. Each model turn is one of:

- a tool call (the first one in the response; see `response_parsing.py`): the code runs in the
  sandbox (with `interpreter="calculator"` it is read as arithmetic and never run, so no sandbox
  is needed: `calculator.py`) and its output is the next observation (a `tool` message, loss mask
  0 in the `whole` layout); reward 0; `info["tool_call"]` is True when code was executed (K_tau
  counts these);
- a final answer `\\boxed{...}`: checked with math-verify against the gold answer; reward +1
  (correct) or -1 (wrong); the episode ends; `info["correct"]`;
- a malformed tool call (broken JSON, unknown tool): an invalid turn whose `info["feedback"]` says
  what was wrong (the trainer's invalid-format penalty applies; the turn uses no tool call);
- anything else: an invalid turn with feedback on the expected format.

Budgets: at most `max_tool_turns` tool calls (the output of the last one says so); a tool call beyond
it ends the episode with -1. At most `max_turns` model turns of any kind (default max_tool_turns + 2);
reaching it without an answer ends the episode with -1.
"""

from __future__ import annotations

import random
from typing import Any

from spear_rl.envs.base import StepResult, register_env
from spear_rl.envs.math_tool.calculator import run_calculator
from spear_rl.envs.math_tool.data import MathProblem, load_problems
from spear_rl.envs.math_tool.response_parsing import (
    TOOL_FORMATS,
    TOOL_NAME,
    first_tool_call,
    format_tool_call,
    python,
    read_answer,
)
from spear_rl.envs.math_tool.sandbox import SandboxLimits, check_sandbox, run_code
from spear_rl.envs.math_tool.verify import answers_match, require_math_verify
from spear_rl.envs.tool_calls import BadToolCall, ToolCall
from spear_rl.envs.tool_env import ToolEnv

CORRECT_REWARD = 1.0
WRONG_REWARD = -1.0
LAST_TOOL_CALL_NOTE = "\n(That was your last tool call: give the final answer in \\boxed{}.)"
FIRST_OBSERVATION = "Solve the task. Run Python if it helps; give the final answer as \\boxed{...}."
NO_TOOL_CALLS_LEFT = "No tool calls left; the episode ended without a final answer."

_EXAMPLE_CODE = "print(2 ** 10 % 7)"
INTERPRETERS = ("python", "calculator")
CALCULATOR_CODE = "Python arithmetic (numbers, + - * / // % **, variables, abs/round/min/max/pow)"


def build_system_prompt(tool_format: str, max_tool_turns: int, interpreter: str = "python") -> str:
    """What the agent is told: reason, optionally run Python, answer in \\boxed{}."""
    formats = []
    if tool_format in ("auto", "hermes"):
        formats.append(format_tool_call(_EXAMPLE_CODE, "hermes"))
    if tool_format in ("auto", "markdown"):
        formats.append(format_tool_call(_EXAMPLE_CODE, "markdown"))
    how = "\nor\n".join(formats)
    what = "Python code" if interpreter == "python" else CALCULATOR_CODE
    return (
        f"You solve math problems. Think step by step. You may run {what} to compute "
        f"(at most {max_tool_turns} times) by writing\n{how}\n"
        "Only the first tool call in a reply runs; print() what you need, and its output comes "
        "back in the next message. When you are sure, give the final answer as \\boxed{answer}."
    )


def build_invalid_feedback(tool_format: str) -> str:
    call = {
        "auto": "a <tool_call> or a ```python block",
        "hermes": 'a <tool_call>{"name": "python", "arguments": {"code": "..."}}</tool_call>',
        "markdown": "a ```python block",
    }[tool_format]
    return f"Invalid response: either run code with {call}, or give the final answer as \\boxed{{...}}."


@register_env("math_tool")
class MathToolEnv(ToolEnv):
    """A `ToolEnv` with one tool, `python`, run in the sandbox. It keeps its own prompt text (which
    describes the tool and both call formats: `tool_prompt = "none"`), also reads fenced python
    blocks as calls, answers in `\\boxed{}`, and adds budgets."""

    name = "math_tool"
    tools = (python,)
    tool_prompt = "none"

    def __init__(
        self,
        dataset: str = "arith",
        question_field: str = "question",
        answer_field: str = "answer",
        difficulty: int = 1,
        max_tool_turns: int = 4,
        max_turns: int | None = None,
        tool_format: str = "auto",
        sandbox: SandboxLimits | dict | None = None,
        eval_dataset: str | None = None,
        eval_fraction: float = 0.1,
        dataset_kwargs: dict | None = None,
        expert_direct_prob: float = 0.5,
        interpreter: str = "python",
    ) -> None:
        super().__init__()
        if tool_format not in TOOL_FORMATS:
            raise ValueError(
                f"tool_format must be one of {', '.join(TOOL_FORMATS)}; got {tool_format!r}"
            )
        if not isinstance(max_tool_turns, int) or max_tool_turns < 0:
            raise ValueError(f"max_tool_turns must be an integer >= 0, got {max_tool_turns!r}")
        max_turns = max_tool_turns + 2 if max_turns is None else max_turns
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be an integer >= 1, got {max_turns!r}")
        if not 0.0 <= expert_direct_prob <= 1.0:
            raise ValueError(f"expert_direct_prob must be in [0, 1], got {expert_direct_prob}")
        if interpreter not in INTERPRETERS:
            raise ValueError(
                f"interpreter must be one of {', '.join(INTERPRETERS)}; got {interpreter!r}"
            )
        require_math_verify()  # fail now, not on the first answer
        self.limits = _as_limits(sandbox)
        self.interpreter = interpreter
        if interpreter == "python":
            check_sandbox(self.limits)  # probes once per process; a clear error if nothing can run
        self.problems = load_problems(
            dataset,
            question_field=question_field,
            answer_field=answer_field,
            difficulty=difficulty,
            eval_fraction=eval_fraction,
            eval_dataset=eval_dataset,
            dataset_kwargs=dataset_kwargs,
        )
        self.tool_format, self.max_tool_turns, self.max_turns = (
            tool_format,
            max_tool_turns,
            max_turns,
        )
        self.expert_direct_prob = expert_direct_prob
        self.instructions = build_system_prompt(tool_format, max_tool_turns, interpreter)
        self.invalid_feedback = build_invalid_feedback(tool_format)
        # Where a rollout may stop generating so that nothing follows a tool call.
        self.tool_call_stop_strings = ["</tool_call>"] if tool_format != "markdown" else []
        self.problem: MathProblem | None = None
        self.tool_calls = 0  # executed code runs (K_tau)
        self.tool_turns = 0  # tool calls made, executed or not (the budget)
        self._expert_direct = False

    # ---- protocol ------------------------------------------------------------------------------
    def _reset(self, seed: int) -> str:
        self.problem = self.problems.problem(seed)
        self.task = self.problem.question
        self.tool_calls = self.tool_turns = 0
        draw = random.Random(f"math_tool/expert/{seed}").random()
        self._expert_direct = self.problem.mental and draw < self.expert_direct_prob
        return FIRST_OBSERVATION

    def step(self, response: str) -> StepResult:
        result = super().step(response)
        if not result.done and self.turns >= self.max_turns:
            result.done = self.done = True
            result.reward = WRONG_REWARD
            result.info.update(correct=False, end_reason="turn_budget")
        result.info["tool_calls"] = self.tool_calls
        return result

    def find_tool_call(self, response: str) -> ToolCall | BadToolCall | None:
        """The first call in `tool_format` (a hermes call read against the tool's schema)."""
        parsed = first_tool_call(response, self.tool_format)
        if parsed is None:
            return None
        if parsed.kind == "malformed":
            return BadToolCall(parsed.text)
        return ToolCall(TOOL_NAME, {"code": parsed.text})

    def parse_answer(self, response: str) -> str | None:
        return read_answer(response)

    def call_tool(self, call: ToolCall) -> StepResult:
        return self._run_tool(call.arguments["code"])

    def final_answer(self, answer: str) -> StepResult:
        return self._answer(answer)

    def _run_tool(self, code: str) -> StepResult:
        if self.tool_turns >= self.max_tool_turns:
            info = {"tool_call": False, "correct": False, "end_reason": "tool_budget"}
            return StepResult(NO_TOOL_CALLS_LEFT, WRONG_REWARD, True, info)
        self.tool_turns += 1
        if self.interpreter == "calculator":
            result = run_calculator(
                code, self.limits.max_output_chars, max_code_chars=self.limits.max_code_chars
            )
        else:
            result = run_code(code, self.limits)
        executed = result.reason != "invalid_code"
        self.tool_calls += int(executed)
        observation = result.output
        if self.tool_turns == self.max_tool_turns:
            observation += LAST_TOOL_CALL_NOTE
        info = {
            "tool_call": executed,
            "tool_ok": result.ok,
            "tool_reason": result.reason,
            "tool_seconds": result.seconds,
            "tool_isolation": result.isolation,  # the sandbox level that ran it
        }
        return StepResult(observation, 0.0, False, info)

    def _answer(self, answer: str) -> StepResult:
        assert self.problem is not None
        correct = answers_match(answer, self.problem.answer)
        self.won = correct
        info = {"tool_call": False, "correct": correct, "answer": answer, "end_reason": "answer"}
        reward = CORRECT_REWARD if correct else WRONG_REWARD
        return StepResult("Correct." if correct else "Incorrect.", reward, True, info)

    # ---- expert (SFT data) -----------------------------------------------------------------------
    def expert_action(self) -> str | None:
        """A full correct response for the current state.

        Generated problems: first a tool call whose code prints the answer, then the boxed answer;
        easy (`mental`) problems are answered directly with probability `expert_direct_prob`
        (seeded per task). Problems without solution code are answered directly.
        """
        if self.done or self.problem is None:
            return None
        problem = self.problem
        can_call = self.tool_turns < self.max_tool_turns and self.tool_calls == 0
        if problem.solution_code and can_call and not self._expert_direct:
            style = "markdown" if self.tool_format == "markdown" else "hermes"
            return "Let me compute this with Python.\n" + format_tool_call(
                problem.solution_code, style
            )
        lead = "So the answer is" if self.tool_calls else "The answer is"
        return f"{lead} \\boxed{{{problem.answer}}}."


def _as_limits(sandbox: Any) -> SandboxLimits:
    if sandbox is None:
        return SandboxLimits()
    if isinstance(sandbox, SandboxLimits):
        return sandbox
    if isinstance(sandbox, dict):
        return SandboxLimits.from_dict(sandbox)
    raise ValueError(
        f"sandbox must be a dict of limits or SandboxLimits, got {type(sandbox).__name__}"
    )
