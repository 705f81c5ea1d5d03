"""Math problems for the `math_tool` env: seed -> problem, with a held-out split.

Sources (the env's `dataset=` string):

- ``arith`` / ``arith:<family>``: the built-in generator (`arith.py`), infinite, `difficulty` 1-5;
- ``reasoning_gym:<name>``: a `reasoning-gym` procedural generator (e.g. ``gsm_symbolic``,
  ``basic_arithmetic``); its own options go in `dataset_kwargs`;
- ``champ``: the 270 competition problems of `champ-dataset` (free-text answers; scoring is best
  effort for answers like "No" or "x=2, y=1");
- a path to a ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file, read with `datasets`; the
  question and answer fields are configurable. A GSM8K-style answer ("... #### 42") or a
  ``\\boxed{}`` answer is reduced to its final value.

Seeds: training seeds are in [0, EVAL_SEED_OFFSET), held-out seeds at EVAL_SEED_OFFSET and above.
Held-out problems are disjoint from training ones by question text:

- generated sources put a question in the held-out part when a hash of its text falls in the
  held-out bucket (`eval_fraction` of the hash space); a seed draws candidates deterministically
  until one lands in its own part, so the two parts can never share a question;
- fixed sources (files, champ) sort their distinct questions by that hash and hold out the first
  `eval_fraction` of them (at least one; duplicates of a question stay together). Seed i is item
  i mod len of its part. `eval_dataset=` replaces the held-out part with a file of its own.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from spear_rl.envs.base import EVAL_SEED_OFFSET
from spear_rl.envs.math_tool.arith import FAMILIES, generate_problem

_FILE_KINDS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SOURCES_HELP = (
    "dataset= takes 'arith', 'arith:<family>' (families: " + ", ".join(FAMILIES) + "), "
    "'reasoning_gym:<name>', 'champ', or a path to a .jsonl/.json/.parquet/.csv file"
)
# A candidate draw that keeps landing in the other part means a broken hash split.
_MAX_DRAWS = 10_000


class MathDataError(ValueError):
    """A dataset that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class MathProblem:
    question: str
    answer: str  # the gold answer, as text (checked with math-verify)
    solution_code: str | None = None  # a program that prints the answer (generated problems)
    mental: bool = False  # easy enough to answer without the tool
    source: str = ""  # where it came from: "arith:modpow", "champ:P_Combinatorics_1", "file#12"


class ProblemSet(Protocol):
    name: str

    def problem(self, seed: int) -> MathProblem: ...


def held_out_bucket(question: str, eval_fraction: float) -> bool:
    """Whether a question belongs to the held-out part (a fixed hash of its text)."""
    digest = hashlib.sha256(question.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction


def _split_of(seed: int) -> tuple[bool, int]:
    """(held_out, index within the part) for a task seed."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"task seeds are integers >= 0, got {seed!r}")
    return (True, seed - EVAL_SEED_OFFSET) if seed >= EVAL_SEED_OFFSET else (False, seed)


# ---- generated sources ---------------------------------------------------------------------------
class GeneratedProblems:
    """The built-in generator; seed s draws candidates (s, 0), (s, 1), ... until one fits its part."""

    def __init__(self, difficulty: int = 1, family: str | None = None, eval_fraction: float = 0.1):
        if family is not None and family not in FAMILIES:
            raise MathDataError(f"unknown arith family {family!r}; known: {', '.join(FAMILIES)}")
        if not isinstance(difficulty, int) or difficulty < 1:
            raise MathDataError(f"difficulty must be an integer >= 1, got {difficulty!r}")
        _check_fraction(eval_fraction)
        self.difficulty, self.family, self.eval_fraction = difficulty, family, eval_fraction
        self.name = "arith" if family is None else f"arith:{family}"

    def problem(self, seed: int) -> MathProblem:
        held_out, index = _split_of(seed)
        part = "eval" if held_out else "train"
        for draw in range(_MAX_DRAWS):
            # str seeds hash with SHA-512 in `random`: the same problem on every machine and run
            rng = random.Random(f"{self.name}/{self.difficulty}/{part}/{index}/{draw}")
            made = generate_problem(rng, self.difficulty, self.family)
            if held_out_bucket(made.question, self.eval_fraction) == held_out:
                return MathProblem(
                    made.question,
                    made.answer,
                    made.solution_code,
                    made.mental,
                    f"arith:{made.family}",
                )
        raise RuntimeError(f"no {part} problem found for seed {seed} after {_MAX_DRAWS} draws")


class ReasoningGymProblems:
    """A reasoning-gym generator used as an endless source with the same hash split."""

    def __init__(self, name: str, eval_fraction: float = 0.1, dataset_kwargs: dict | None = None):
        rg = _import_optional("reasoning_gym", "reasoning-gym==0.1.25")
        _check_fraction(eval_fraction)
        kwargs = {"seed": 0, "size": 100_000, **(dataset_kwargs or {})}
        try:
            self._items = rg.create_dataset(name, **kwargs)
        except ValueError as err:
            known = ", ".join(sorted(getattr(rg.factory, "DATASETS", {}))[:40])
            raise MathDataError(
                f"reasoning_gym dataset {name!r} failed: {err}; some known names: {known}, ..."
            ) from err
        self.size = len(self._items)
        self.eval_fraction = eval_fraction
        self.name = f"reasoning_gym:{name}"

    def problem(self, seed: int) -> MathProblem:
        held_out, index = _split_of(seed)
        # walk the generator's items from a part-specific start until one fits the part
        start = (index * 2 + (1 if held_out else 0)) % self.size
        for step in range(min(self.size, _MAX_DRAWS)):
            position = (start + step) % self.size
            item = self._items[position]
            question, answer = str(item["question"]), str(item["answer"])
            if held_out_bucket(question, self.eval_fraction) == held_out:
                return MathProblem(question, answer, None, False, f"{self.name}#{position}")
        raise MathDataError(f"{self.name}: no {'held-out' if held_out else 'training'} item found")


# ---- fixed sources -------------------------------------------------------------------------------
class FixedProblems:
    """A finite list of problems split by question hash (or with a separate held-out list)."""

    def __init__(
        self,
        name: str,
        problems: list[MathProblem],
        eval_fraction: float = 0.1,
        eval_problems: list[MathProblem] | None = None,
    ):
        if not problems:
            raise MathDataError(
                f"{name}: no usable problems (every row lacked a question or answer)"
            )
        self.name = name
        if eval_problems is not None:
            self.train, self.eval = list(problems), list(eval_problems)
            if not self.eval:
                raise MathDataError(f"{name}: the eval dataset has no usable problems")
            return
        _check_fraction(eval_fraction)
        distinct = sorted({p.question.strip() for p in problems}, key=_question_hash)
        if len(distinct) < 2:
            raise MathDataError(
                f"{name}: a held-out split needs at least 2 distinct questions; pass eval_dataset="
            )
        n_eval = min(max(1, round(eval_fraction * len(distinct))), len(distinct) - 1)
        held = set(distinct[:n_eval])
        self.train = [p for p in problems if p.question.strip() not in held]
        self.eval = [p for p in problems if p.question.strip() in held]

    def problem(self, seed: int) -> MathProblem:
        held_out, index = _split_of(seed)
        part = self.eval if held_out else self.train
        return part[index % len(part)]

    def __len__(self) -> int:
        return len(self.train) + len(self.eval)


def _question_hash(question: str) -> bytes:
    return hashlib.sha256(question.encode("utf-8")).digest()


def _check_fraction(eval_fraction: float) -> None:
    if not 0.0 < eval_fraction < 1.0:
        raise MathDataError(
            f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}"
        )


def gold_answer(raw: Any) -> str:
    """The final value of a dataset answer: '#### 42' -> '42', '... \\boxed{7}' -> '7'."""
    from spear_rl.envs.math_tool.response_parsing import extract_boxed

    text = str(raw).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    boxed = extract_boxed(text)
    return boxed if boxed is not None else text


_file_cache: dict[tuple, list[MathProblem]] = {}
_file_cache_lock = threading.Lock()


def load_problem_file(path: str, question_field: str, answer_field: str) -> list[MathProblem]:
    """Rows of a user's JSONL/JSON/Parquet/CSV file (through `datasets`), cached per file version."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in _FILE_KINDS:
        raise MathDataError(f"unknown dataset {path!r}; {_SOURCES_HELP}")
    if not os.path.isfile(path):
        raise MathDataError(f"math dataset file not found: {path!r}; {_SOURCES_HELP}")
    key = (os.path.abspath(path), os.path.getmtime(path), question_field, answer_field)
    with _file_cache_lock:
        if key in _file_cache:
            return _file_cache[key]
    datasets = _import_optional("datasets", "datasets")
    try:
        table = datasets.load_dataset(_FILE_KINDS[extension], data_files=path, split="train")
    except Exception as err:  # datasets raises many kinds for a bad file
        raise MathDataError(
            f"cannot read {path!r} as {extension}: {type(err).__name__}: {err}"
        ) from err
    for field_name, option in ((question_field, "question_field"), (answer_field, "answer_field")):
        if field_name not in table.column_names:
            raise MathDataError(
                f"{path}: no field {field_name!r} (set {option}=); its fields are: "
                + ", ".join(table.column_names)
            )
    problems = []
    for row_index, row in enumerate(table):
        question, answer = row[question_field], row[answer_field]
        if question is None or answer is None or not str(question).strip():
            continue
        gold = gold_answer(answer)
        if gold:
            problems.append(MathProblem(str(question).strip(), gold, source=f"{path}#{row_index}"))
    with _file_cache_lock:
        _file_cache[key] = problems
    return problems


_champ_cache: list[MathProblem] | None = None
_generator_cache: dict[tuple, ReasoningGymProblems] = {}


def load_champ() -> list[MathProblem]:
    """The 270 CHAMP problems (champ-dataset 1.0.0 ships them as a JSON file: `load('v0')`)."""
    global _champ_cache
    if _champ_cache is None:
        champ = _import_optional("champ_dataset", "champ-dataset==1.0.0")
        dataset = champ.load("v0")
        _champ_cache = [
            MathProblem(p.text.strip(), gold_answer(p.answer), source=f"champ:{key}")
            for key, p in sorted(dataset.problems.items())
        ]
    return _champ_cache


def load_problems(
    dataset: str = "arith",
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    difficulty: int = 1,
    eval_fraction: float = 0.1,
    eval_dataset: str | None = None,
    dataset_kwargs: dict | None = None,
) -> ProblemSet:
    """The problem source named by `dataset` (see the module docstring)."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise MathDataError(f"empty dataset name; {_SOURCES_HELP}")
    if dataset == "arith" or dataset.startswith("arith:"):
        family = dataset.partition(":")[2] or None
        return GeneratedProblems(difficulty, family, eval_fraction)
    if dataset.startswith("reasoning_gym:"):
        key = (dataset, eval_fraction, repr(sorted((dataset_kwargs or {}).items())))
        with _file_cache_lock:
            if key not in _generator_cache:  # building one draws its task list: share it
                name = dataset.partition(":")[2]
                _generator_cache[key] = ReasoningGymProblems(name, eval_fraction, dataset_kwargs)
            return _generator_cache[key]
    if dataset == "champ":
        problems = load_champ()
    else:
        problems = load_problem_file(dataset, question_field, answer_field)
    eval_problems = None
    if eval_dataset is not None:
        eval_problems = load_problem_file(eval_dataset, question_field, answer_field)
    return FixedProblems(dataset, problems, eval_fraction, eval_problems)


def _import_optional(module: str, requirement: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this math dataset needs the {module!r} package: pip install '{requirement}' "
            "(or pip install 'spear-rl[math]' for math-verify and datasets)"
        ) from err
