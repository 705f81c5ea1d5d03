"""The math env's `calculator` interpreter: Python arithmetic read with `ast`, never executed; it
needs no sandbox, so these tests run on any machine."""

from __future__ import annotations

import json
import random
import time

import pytest

from spear_rl.envs.base import make_env
from spear_rl.envs.math_tool.arith import generate_problem
from spear_rl.envs.math_tool.calculator import MAX_INT_BITS, run_calculator


@pytest.mark.parametrize(
    "code, printed",
    [
        ("print(4821 * 397 - 12004 + 889)", "1902822\n"),
        ("x = 3\nx += 4\nprint(x, x / 2)", "7 3.5\n"),
        ("print(-7 // 2, -7 % 2, 2 ** 10 % 7)", "-4 1 2\n"),
        (
            "print(pow(3, 1000, 7), round(2.5), min(4, 2), max(1, 9), abs(-3), float(2))",
            "4 2 2 9 3 2.0\n",
        ),
        ("a = b = 2\n(a + b) * 3\nprint(a * b)", "4\n"),  # bare expressions print nothing
        ("print(1e3 / 8)", "125.0\n"),
    ],
)
def test_prints_what_python_prints(code, printed):
    result = run_calculator(code)
    assert (result.ok, result.reason, result.output) == (True, "ok", printed)
    assert result.isolation == "calculator"
    namespace_output = []  # the same code under real Python prints the same text
    exec(code, {"print": lambda *a: namespace_output.append(" ".join(map(repr, a)) + "\n")})  # noqa: S102
    assert "".join(namespace_output) == printed


@pytest.mark.parametrize(
    "code, message",
    [
        ("import os\nprint(1)", "import is not supported"),
        ("print(__import__('os'))", "the function __import__() is not supported"),
        ("print(__import__('os').system('id'))", "the call .system() is not supported"),
        ("open('/etc/passwd').read()", "not supported"),
        ("print((1).__class__)", "an attribute (x.y) is not supported"),
        ("for i in range(3):\n    print(i)", "a for loop is not supported"),
        ("print('a')", "a str constant is not supported"),
        ("print(y)", "NameError: name 'y' is not defined"),
        ("print(1 / 0)", "ZeroDivisionError: division by zero"),
        ("print(9 ** 9 ** 9)", f"over {MAX_INT_BITS} bits"),
        ("print(pow(10, 10 ** 6))", f"over {MAX_INT_BITS} bits"),
        ("x = 2 ** 9000\nprint(x * x)", f"over {MAX_INT_BITS} bits"),
        ("print(2.0 ** 5000)", "OverflowError"),
        ("print(max())", "TypeError"),
        ("print(1, sep='')", "print() takes no keywords"),
        ("print(1 << 3)", "<< is not supported"),
    ],
)
def test_anything_else_is_an_error_the_model_reads(code, message):
    result = run_calculator(code)
    assert not result.ok and result.reason == "error"
    assert message in result.output


def test_output_before_an_error_is_kept():
    result = run_calculator("print(6 * 7)\nimport os")
    assert result.output.startswith("42\nError: import is not supported")


@pytest.mark.parametrize(
    "code",
    ["print(", "", "   ", "\x00", "(" * 300 + "1" + ")" * 300, "print(" + "+1" * 20_000 + ")"],
)
def test_unparseable_code_is_invalid(code):
    result = run_calculator(code)
    assert not result.ok and result.reason == "invalid_code"
    assert result.output.startswith(("SyntaxError", "Error: the tool call contains no code"))


def test_hostile_inputs_stay_cheap():
    started = time.monotonic()
    for code in [
        "x = 2 ** 9999\n" + "x = x * x // x\n" * 2000 + "print(x % 10)",
        "print(" + " * ".join(["99999999999"] * 2000) + ")",
        "print(pow(7, 2 ** 9999, 2 ** 9999 + 1))",
        "x = 1\n" * 4000,
    ]:
        result = run_calculator(code)
        assert result.reason in ("ok", "error")
    assert (
        time.monotonic() - started < 10
    )  # each is bounded; all four take well under a second here


def test_long_output_is_truncated():
    code = "x = 10 ** 2900\n" + "print(x)\n" * 50
    result = run_calculator(code, max_output_chars=500)
    assert result.ok and len(result.output) <= 600


def test_every_arithmetic_and_modpow_expert_program_runs():
    rng = random.Random(0)
    for difficulty in (1, 3, 5):
        for family in ("arithmetic", "modpow"):
            for _ in range(20):
                problem = generate_problem(rng, difficulty, family)
                result = run_calculator(problem.solution_code)
                assert result.ok and result.output.strip() == problem.answer


def _hermes(code: str) -> str:
    call = json.dumps({"name": "python", "arguments": {"code": code}})
    return f"<tool_call>\n{call}\n</tool_call>"


def test_env_with_the_calculator_needs_no_sandbox_and_plays_an_episode():
    env = make_env(
        "math_tool",
        dataset="arith:arithmetic",
        interpreter="calculator",
        # an isolation level that cannot start anywhere: the calculator must not probe it
        sandbox={"isolation": "rlimits", "allow_unsafe": True, "memory_mb": 1},
    )
    assert "Python arithmetic" in env.instructions
    env.reset(3)
    step = env.step(_hermes(env.problem.solution_code))
    assert step.info["tool_call"] and step.info["tool_ok"]
    assert step.info["tool_isolation"] == "calculator"
    assert step.observation.strip() == env.problem.answer
    done = env.step(f"\\boxed{{{env.problem.answer}}}")
    assert done.done and done.reward == 1.0 and done.info["correct"]

    env.reset(4)  # a program the calculator refuses is a tool call with an error, not a crash
    refused = env.step(_hermes("import os\nprint(os.getcwd())"))
    assert refused.info["tool_call"] and not refused.info["tool_ok"]
    assert "import is not supported" in refused.observation


def test_expert_wins_every_episode_with_the_calculator():
    env = make_env("math_tool", dataset="arith:arithmetic", interpreter="calculator", difficulty=2)
    for seed in range(10):
        env.reset(seed)
        while not env.done:
            result = env.step(env.expert_action())
        assert result.info["correct"]


def test_an_unknown_interpreter_is_a_clear_error():
    with pytest.raises(ValueError, match="interpreter must be one of python, calculator"):
        make_env("math_tool", interpreter="bash")
