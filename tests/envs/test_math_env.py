"""The math_tool env: tool calls in both formats, rewards, budgets, invalid turns, answer checking
with math-verify, and an expert that is always right."""

from __future__ import annotations

import json
import sys

import pytest

from spear_rl.envs.base import make_env
from spear_rl.envs.math_tool.arith import FAMILIES
from spear_rl.envs.math_tool.data import load_problems
from spear_rl.envs.math_tool.env import FIRST_OBSERVATION, LAST_TOOL_CALL_NOTE, MathToolEnv
from spear_rl.envs.math_tool.response_parsing import extract_boxed, parse_response
from spear_rl.envs.math_tool.sandbox import (
    SandboxLimits,
    SandboxUnavailableError,
    isolation_level,
    run_code_batch,
)
from spear_rl.envs.math_tool.verify import answers_match, require_math_verify

FAST = {"cpu_seconds": 2, "wall_seconds": 5}


def _no_safe_sandbox() -> str:
    """Why the math env cannot run model code on this machine ('' when it can)."""
    try:
        isolation_level(SandboxLimits())
    except SandboxUnavailableError as err:
        return str(err)
    return ""


# The math env refuses to start without bubblewrap (docs/sandbox.md); .ci/run installs it as root.
pytestmark = pytest.mark.skipif(bool(_no_safe_sandbox()), reason=_no_safe_sandbox() or "sandbox ok")
# 2^3 = 8 = 1 (mod 7), so 2^100 = 2^99 * 2 = 2 (mod 7)
PROBLEMS = [
    {"problem": "What is 2^100 mod 7?", "solution": "2"},
    {"problem": "What is one half as a fraction?", "solution": "1/2"},
    {"problem": "Is 91 prime? Answer Yes or No.", "solution": "No"},
    {"problem": "What is 12345 + 1?", "solution": "12346"},
]


def hermes(code: str) -> str:
    call = json.dumps({"name": "python", "arguments": {"code": code}})
    return f"I will compute it.\n<tool_call>\n{call}\n</tool_call>"


def fenced(code: str) -> str:
    return f"Let me run this:\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("math") / "problems.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in PROBLEMS) + "\n")
    return str(path)


def env_on(problem_file: str, question: str, **kwargs) -> MathToolEnv:
    """An env reset to the seed whose problem is `question` (train or held-out part)."""
    kwargs.setdefault("sandbox", FAST)
    env = make_env(
        "math_tool",
        dataset=problem_file,
        question_field="problem",
        answer_field="solution",
        **kwargs,
    )
    assert isinstance(env, MathToolEnv)
    for seed in (0, 1, 2, 3, 1_000_000):
        if env.problems.problem(seed).question == question:
            env.reset(seed)
            return env
    raise AssertionError(f"{question!r} not reachable")


def test_registered_with_tool_role_and_a_prompt_that_shows_both_formats(problem_file):
    env = make_env("math_tool", sandbox=FAST)
    assert env.observation_role == "tool"
    assert "<tool_call>" in env.system_prompt and "```python" in env.system_prompt
    assert "\\boxed{" in env.system_prompt
    hermes_only = make_env("math_tool", tool_format="hermes", sandbox=FAST)
    assert "```python" not in hermes_only.system_prompt
    assert hermes_only.tool_call_stop_strings == ["</tool_call>"]
    with pytest.raises(ValueError, match="tool_format must be one of auto, hermes, markdown"):
        make_env("math_tool", tool_format="xml")


def test_tool_call_then_correct_answer_is_plus_one(problem_file):
    env = env_on(problem_file, "What is 2^100 mod 7?")
    first = env.step(hermes("print(pow(2, 100, 7))"))
    assert first.observation == "2\n"
    assert (first.reward, first.done) == (0.0, False)
    assert first.info["valid"] and first.info["tool_call"] and first.info["tool_ok"]
    assert first.info["tool_isolation"] == isolation_level(env.limits)  # the level that ran it
    assert env.observation == "2\n"
    final = env.step("The tool says 2, so \\boxed{2}.")
    assert (final.reward, final.done) == (1.0, True)
    assert final.info["correct"] and final.info["won"] and final.info["tool_calls"] == 1


def test_wrong_answer_is_minus_one(problem_file):
    env = env_on(problem_file, "What is 2^100 mod 7?")
    final = env.step("I guess \\boxed{3}")
    assert (final.reward, final.done, final.info["correct"], final.info["won"]) == (
        -1.0,
        True,
        False,
        False,
    )
    with pytest.raises(RuntimeError):
        env.step("\\boxed{2}")


def test_no_answer_within_max_tool_turns_is_minus_one(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?", max_tool_turns=2)
    assert not env.step(hermes("print(1)")).done
    second = env.step(fenced("print(2)"))
    assert second.observation == "2\n" + LAST_TOOL_CALL_NOTE and not second.done
    third = env.step(hermes("print(3)"))
    assert (third.reward, third.done, third.info["end_reason"]) == (-1.0, True, "tool_budget")
    assert not third.info["tool_call"] and third.info["tool_calls"] == 2


def test_turn_budget_ends_an_episode_of_invalid_turns(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?", max_tool_turns=1)  # max_turns = 3
    results = [env.step("I am thinking about it...") for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert results[-1].reward == -1.0 and results[-1].info["end_reason"] == "turn_budget"


@pytest.mark.parametrize(
    "response",
    [
        "no tags at all, just talk",
        "\x00\x01garbage\ufffd<tool_call",
        "x" * 100_000,
        "\\boxed{" + "9" * 100_000 + "}",
        "\\boxed{}",
        "\\boxed{unclosed",
        "```\nprint('a bare fence is not python')\n```",
        "\\boxed{\ufffd}",
    ],
)
def test_invalid_responses_are_invalid_turns(problem_file, response):
    env = env_on(problem_file, "What is 12345 + 1?")
    result = env.step(response)
    assert not result.info["valid"] and not result.info["tool_call"]
    assert (result.reward, result.done) == (0.0, False)
    assert "\\boxed" in result.info["feedback"] and "tool_call" in result.info["feedback"]
    assert result.observation == env.observation == FIRST_OBSERVATION
    assert env.task == "What is 12345 + 1?"


def test_malformed_tool_json_is_an_invalid_turn_that_says_why(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?", max_tool_turns=1)
    bad = env.step('<tool_call>{"name": "python", "arguments": {"code": print(1)}}</tool_call>')
    assert not bad.info["valid"] and not bad.info["tool_call"] and not bad.done
    assert "not valid JSON" in bad.info["feedback"]
    assert bad.info["parsed"] is False  # a void turn for Dr.BoT's incomplete filter
    wrong_tool = env.step('<tool_call>{"name": "bash", "arguments": {"code": "ls"}}</tool_call>')
    assert "unknown tool 'bash'" in wrong_tool.info["feedback"]
    # the tool budget is untouched: the one allowed call still runs
    ok = env.step(hermes("print(12345 + 1)"))
    assert ok.info["tool_call"] and ok.observation.startswith("12346\n") and ok.info["parsed"]


def test_both_formats_and_string_arguments_run(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?")
    assert env.step(fenced("print(6 * 7)")).observation == "42\n"
    openai_style = json.dumps({"name": "python", "arguments": json.dumps({"code": "print(7)"})})
    assert env.step(f"<tool_call>{openai_style}</tool_call>").observation == "7\n"
    unterminated = '<tool_call>{"name": "python", "arguments": {"code": "print(8)"}}'
    assert env.step(unterminated).observation == "8\n"


def test_a_format_outside_tool_format_is_not_a_tool_call(problem_file):
    hermes_env = env_on(problem_file, "What is 12345 + 1?", tool_format="hermes")
    assert not hermes_env.step(fenced("print(1)")).info["valid"]
    markdown_env = env_on(problem_file, "What is 12345 + 1?", tool_format="markdown")
    assert not markdown_env.step(hermes("print(1)")).info["valid"]


def test_tool_call_and_answer_in_one_response_runs_the_tool_and_ignores_the_answer(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?")
    result = env.step("\\boxed{12346} but let me check " + hermes("print(12345 + 1)"))
    assert result.info["tool_call"] and not result.done and result.observation == "12346\n"


def test_tool_errors_come_back_as_the_observation(problem_file):
    env = env_on(problem_file, "What is 12345 + 1?")
    result = env.step(hermes("print(1 / 0)"))
    assert result.info["tool_call"] and not result.info["tool_ok"]
    assert result.observation.endswith("ZeroDivisionError: division by zero")
    empty = env.step(hermes("   "))
    assert not empty.info["tool_call"] and "no code" in empty.observation  # not an executed call


def test_math_verify_equivalences_reach_the_reward(problem_file):
    env = env_on(problem_file, "What is one half as a fraction?")
    assert env.step("\\boxed{0.5}").reward == 1.0
    env = env_on(problem_file, "What is one half as a fraction?")
    assert env.step("\\boxed{\\frac{1}{2}}").reward == 1.0
    env = env_on(problem_file, "Is 91 prime? Answer Yes or No.")
    assert env.step("91 = 7 * 13, so \\boxed{\\text{No}}").reward == 1.0


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("0.5", "1/2", True),
        ("\\frac{1}{2}", "0.5", True),
        ("1/2", "\\frac{1}{2}", True),
        ("12,345", "12345", True),
        ("42.0", "42", True),
        ("1+x", "x+1", True),
        ("\\sqrt{2}", "2^{1/2}", True),
        ("No", "No", True),
        ("yes", "No", False),
        ("3", "4", False),
        ("3.14159", "\\pi", False),
        ("", "1", False),
        ("(1,234)", "(1234)", False),
    ],
)
def test_answers_match(prediction, gold, expected):
    assert answers_match(prediction, gold) is expected


def test_answers_match_in_a_worker_thread_checks_without_the_timeout_warning(monkeypatch, caplog):
    """Off the main thread math-verify runs without timeouts (we bound answer length instead)
    and would warn once about it; the warning is dropped, the comparison still symbolic."""
    import threading

    import math_verify.grader
    import math_verify.parser

    monkeypatch.setattr(math_verify.parser, "TIMEOUT_WARNING_SHOWN", False)
    monkeypatch.setattr(math_verify.grader, "TIMEOUT_WARNING_SHOWN", False)
    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match("\\frac{1}{2}", "0.5")))
    with caplog.at_level("WARNING"):
        worker.start()
        worker.join()
    assert results == [True]
    assert not [r for r in caplog.records if "Timeout is disabled" in r.getMessage()]


def test_extract_boxed_takes_the_last_balanced_box():
    assert extract_boxed("first \\boxed{1} then \\boxed{\\frac{a}{b}} end") == "\\frac{a}{b}"
    assert extract_boxed("\\boxed{") is None and extract_boxed("no box") is None
    assert parse_response("\\boxed{7}").kind == "answer"  # type: ignore[union-attr]


def test_expert_solves_generated_problems_and_its_code_prints_the_gold_answer():
    problems = [
        load_problems(f"arith:{family}", difficulty=difficulty).problem(seed)
        for family in FAMILIES
        for difficulty, seed in ((1, 0), (2, 1), (3, 2))
    ]
    outputs = run_code_batch(
        [p.solution_code for p in problems], SandboxLimits(**FAST), max_workers=4
    )
    assert [o.output.strip() for o in outputs] == [p.answer for p in problems]
    # play two whole episodes through the env
    env = make_env("math_tool", dataset="arith", difficulty=2, expert_direct_prob=0.0, sandbox=FAST)
    for seed in (0, 1):
        env.reset(seed)
        first = env.step(env.format_action(env.expert_action()))
        assert first.info["tool_call"] and first.observation.strip() == env.problem.answer
        final = env.step(env.expert_action())
        assert final.done and final.reward == 1.0
        assert env.expert_action() is None


def test_expert_answers_easy_problems_directly_with_the_given_probability():
    always = make_env("math_tool", difficulty=1, expert_direct_prob=1.0, sandbox=FAST)
    never = make_env("math_tool", difficulty=1, expert_direct_prob=0.0, sandbox=FAST)
    hard = make_env("math_tool", difficulty=3, expert_direct_prob=1.0, sandbox=FAST)
    for env in (always, never, hard):
        env.reset(5)
    assert always.expert_action().startswith("The answer is \\boxed{")
    assert "<tool_call>" in never.expert_action() and "<tool_call>" in hard.expert_action()
    half = make_env("math_tool", difficulty=1, expert_direct_prob=0.5, sandbox=FAST)
    direct = []
    for seed in range(40):
        half.reset(seed)
        direct.append("<tool_call>" not in half.expert_action())
    assert 8 <= sum(direct) <= 32  # both kinds occur
    again = []
    for seed in range(40):
        half.reset(seed)
        again.append("<tool_call>" not in half.expert_action())
    assert again == direct  # seeded per task
    answer = always.step(always.expert_action())
    assert answer.reward == 1.0


def test_markdown_expert_uses_fenced_blocks():
    env = make_env("math_tool", difficulty=3, tool_format="markdown", sandbox=FAST)
    env.reset(0)
    assert env.expert_action().count("```") == 2


def test_sandbox_limits_from_config_and_bad_keys():
    env = make_env("math_tool", sandbox={"cpu_seconds": 2, "max_output_chars": 500})
    assert (env.limits.cpu_seconds, env.limits.max_output_chars) == (2, 500)
    with pytest.raises(ValueError, match="unknown sandbox limit.*cpu"):
        make_env("math_tool", sandbox={"cpu": 2})


def test_missing_math_verify_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ImportError, match=r"spear-rl\[math\]"):
        require_math_verify()
