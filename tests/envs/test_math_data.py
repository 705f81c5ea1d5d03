"""Math data: the generator's answers checked independently, determinism, difficulty, held-out
disjointness, users' JSONL/Parquet files through `datasets`, and one-line errors."""

from __future__ import annotations

import json
import random
import re

import pytest

from spear_rl.envs.base import EVAL_SEED_OFFSET, make_env
from spear_rl.envs.math_tool.arith import FAMILIES
from spear_rl.envs.math_tool.data import (
    FixedProblems,
    GeneratedProblems,
    MathDataError,
    MathProblem,
    gold_answer,
    held_out_bucket,
    load_problems,
)


def independent_answer(question: str) -> int:
    """Recompute a generated problem's answer from its text alone, by another route."""
    import sympy

    if match := re.fullmatch(r"What is ([\d *+-]+)\?", question):
        return eval(match.group(1))  # digits and + - * only (checked by the regex)
    if match := re.fullmatch(
        r"What is the remainder when (\d+)\^(\d+) is divided by (\d+)\?", question
    ):
        a, b, m = map(int, match.groups())
        return pow(a, b, m)
    if match := re.fullmatch(r"How many prime numbers are less than or equal to (\d+)\?", question):
        return int(sympy.primepi(int(match.group(1))))
    numbers = list(map(int, re.findall(r"\d+", question)))
    _, n, a, b = numbers
    ks = range(1, n + 1)
    if " or " in question:
        return sum(1 for k in ks if k % a == 0 or k % b == 0)
    if "but not" in question:
        return sum(1 for k in ks if k % a == 0 and k % b != 0)
    assert "neither" in question, question
    return sum(1 for k in ks if k % a != 0 and k % b != 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_generated_answers_are_exact(family):
    for difficulty in (1, 2, 3):
        source = GeneratedProblems(difficulty, family)
        for seed in (0, 1, EVAL_SEED_OFFSET):
            problem = source.problem(seed)
            assert problem.answer == str(independent_answer(problem.question)), problem
            assert problem.mental == (difficulty == 1)


def test_generation_is_deterministic_across_instances():
    a = [GeneratedProblems(2).problem(seed) for seed in range(20)]
    b = [GeneratedProblems(2).problem(seed) for seed in range(20)]
    assert a == b
    assert len({p.question for p in a}) == 20
    # pinned: the same seed gives the same problem on every machine and Python run
    assert GeneratedProblems(1, "modpow").problem(0) == GeneratedProblems(1, "modpow").problem(0)


def test_difficulty_changes_the_numbers():
    def largest_number(problem: MathProblem) -> int:
        return max(int(n) for n in re.findall(r"\d+", problem.question))

    for family in FAMILIES:
        easy = [largest_number(GeneratedProblems(1, family).problem(s)) for s in range(10)]
        hard = [largest_number(GeneratedProblems(4, family).problem(s)) for s in range(10)]
        assert max(easy) < min(hard), (family, easy, hard)
    assert GeneratedProblems(1).problem(3).question != GeneratedProblems(3).problem(3).question


def test_generated_held_out_part_is_disjoint_and_in_its_bucket():
    source = GeneratedProblems(1, eval_fraction=0.2)
    train = {source.problem(s).question for s in range(400)}
    held = {source.problem(EVAL_SEED_OFFSET + s).question for s in range(400)}
    assert train and held and not (train & held)
    assert all(held_out_bucket(q, 0.2) for q in held)
    assert not any(held_out_bucket(q, 0.2) for q in train)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


ROWS = [
    {"problem": f"What is {i} + {i}?", "solution": f"Twice {i}. #### {2 * i}"} for i in range(40)
]


def test_user_jsonl_with_custom_fields_through_datasets(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    source = load_problems(
        path, question_field="problem", answer_field="solution", eval_fraction=0.25
    )
    assert isinstance(source, FixedProblems) and len(source) == 40
    assert (len(source.train), len(source.eval)) == (30, 10)
    first = source.problem(0)
    i = int(first.question.split()[2])
    assert first.answer == str(2 * i)  # the GSM8K "#### 42" tail is the gold answer
    assert source.problem(len(source.train)) == first  # seed i -> item i mod len
    train = {source.problem(s).question for s in range(30)}
    held = {source.problem(EVAL_SEED_OFFSET + s).question for s in range(10)}
    assert len(train) == 30 and len(held) == 10 and not (train & held)
    env = make_env("math_tool", dataset=path, question_field="problem", answer_field="solution")
    env.reset(0)
    assert env.task == first.question


def test_fixed_split_ignores_file_order_and_keeps_duplicates_together(tmp_path):
    shuffled = ROWS[:]
    random.Random(1).shuffle(shuffled)
    a = load_problems(
        write_jsonl(tmp_path / "a.jsonl", ROWS), question_field="problem", answer_field="solution"
    )
    b = load_problems(
        write_jsonl(tmp_path / "b.jsonl", shuffled),
        question_field="problem",
        answer_field="solution",
    )
    assert {p.question for p in a.eval} == {p.question for p in b.eval}
    dup = [{"q": "same?", "a": "1"}, {"q": "same?", "a": "1"}] + [
        {"q": f"q{i}", "a": "2"} for i in range(5)
    ]
    split = load_problems(
        write_jsonl(tmp_path / "d.jsonl", dup),
        question_field="q",
        answer_field="a",
        eval_fraction=0.5,
    )
    in_eval = [p.question for p in split.eval].count("same?")
    in_train = [p.question for p in split.train].count("same?")
    assert (in_eval, in_train) in ((2, 0), (0, 2))


def test_parquet_file_and_separate_eval_file(tmp_path):
    import datasets  # the `math` extra; CI installs it

    path = str(tmp_path / "train.parquet")
    datasets.Dataset.from_list(
        [{"question": "What is 3 * 3?", "answer": 9}, {"question": "1+1?", "answer": 2}]
    ).to_parquet(path)
    eval_path = write_jsonl(
        tmp_path / "eval.jsonl", [{"question": "What is 5 - 7?", "answer": "-2"}]
    )
    source = load_problems(path, eval_dataset=eval_path)
    assert [source.problem(s).answer for s in (0, 1)] == ["9", "2"]  # numbers become text
    assert source.problem(EVAL_SEED_OFFSET).question == "What is 5 - 7?"


def test_bad_path_unknown_name_and_missing_field_are_one_line_errors(tmp_path):
    with pytest.raises(MathDataError, match="file not found: .*nope.jsonl.*dataset= takes") as err:
        load_problems(str(tmp_path / "nope.jsonl"))
    assert "\n" not in str(err.value)
    with pytest.raises(MathDataError, match="unknown dataset 'gsm8k'"):
        load_problems("gsm8k")
    path = write_jsonl(tmp_path / "f.jsonl", ROWS)
    with pytest.raises(
        MathDataError,
        match="no field 'question' \\(set question_field=\\); its fields are: problem, solution",
    ):
        load_problems(path)
    with pytest.raises(MathDataError, match="unknown arith family 'calculus'"):
        load_problems("arith:calculus")
    with pytest.raises(MathDataError, match="at least 2 distinct questions"):
        load_problems(write_jsonl(tmp_path / "one.jsonl", [{"question": "q", "answer": "1"}]))
    with pytest.raises(ValueError, match="seeds are integers >= 0"):
        GeneratedProblems().problem(-1)


def test_gold_answer_reduces_rationales():
    assert gold_answer("Add them: 3 + 4 = 7.\n#### 7") == "7"
    assert gold_answer("so the result is \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert gold_answer(42) == "42"


def test_champ_adapter():
    import champ_dataset  # noqa: F401  (the `math` extra)

    source = load_problems("champ")
    assert len(source) == 270
    assert source.problem(0).source.startswith("champ:P_")
    train = {p.question for p in source.train}
    assert not train & {p.question for p in source.eval} and len(source.eval) == 27


@pytest.mark.slow  # importing reasoning_gym takes several seconds
def test_reasoning_gym_adapter():
    import reasoning_gym  # noqa: F401  (the `math` extra)

    source = load_problems("reasoning_gym:basic_arithmetic", eval_fraction=0.2)
    problems = [source.problem(s) for s in range(30)]
    assert all(p.answer for p in problems) and problems == [source.problem(s) for s in range(30)]
    held = {source.problem(EVAL_SEED_OFFSET + s).question for s in range(30)}
    assert not held & {p.question for p in problems}
    # the gold answers are right: evaluate the expressions ourselves
    for problem in problems:
        expression = re.fullmatch(r"Calculate ([\d\s+\-*/().]+)\.", problem.question)
        if expression:  # digits, operators and brackets only (checked by the regex)
            assert float(eval(expression.group(1))) == pytest.approx(float(problem.answer))
    with pytest.raises(MathDataError, match="reasoning_gym dataset 'no_such_task'"):
        load_problems("reasoning_gym:no_such_task")
