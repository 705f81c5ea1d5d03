"""The built-in problem generator: questions where running code beats guessing.

Four families, each with exact integer answers and a program that prints the answer (the expert's
tool call):

- ``arithmetic``: a sum of signed products of large numbers (`4821 * 397 - 12004 + 889`);
- ``modpow``: `a^b mod m`;
- ``divisible``: how many integers in [1, N] are divisible by a or b (or by a but not b, or by neither);
- ``primes``: how many primes are at most N.

`difficulty` (1 = easy, 5 = hard; larger values keep growing) scales the digits, terms and ranges.
Difficulty-1 problems are marked `mental`: small enough that a careful solver may skip the tool.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

FAMILIES = ("arithmetic", "modpow", "divisible", "primes")


@dataclass(frozen=True)
class GeneratedProblem:
    question: str
    answer: str
    solution_code: str
    family: str
    mental: bool


def generate_problem(
    rng: random.Random, difficulty: int, family: str | None = None
) -> GeneratedProblem:
    """One problem from `rng`; `family` picks one kind, None draws it from `rng`."""
    if difficulty < 1:
        raise ValueError(f"difficulty must be >= 1, got {difficulty}")
    if family is None:
        family = rng.choice(FAMILIES)
    if family not in _GENERATORS:
        raise ValueError(f"unknown arith family {family!r}; known: {', '.join(FAMILIES)}")
    question, answer, code = _GENERATORS[family](rng, difficulty)
    return GeneratedProblem(question, str(answer), code, family, mental=difficulty <= 1)


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def _arithmetic(rng: random.Random, d: int) -> tuple[str, int, str]:
    digits = 1 + d  # 2-digit numbers at difficulty 1, 6-digit at 5
    n_terms = 2 + d
    text, total = "", 0
    for i in range(n_terms):
        factors = [_number(rng, digits) for _ in range(rng.choice((1, 1, 2)))]
        sign = 1 if i == 0 else rng.choice((1, -1))
        term = " * ".join(str(f) for f in factors)
        text += term if i == 0 else (" + " if sign > 0 else " - ") + term
        total += sign * math.prod(factors)
    return f"What is {text}?", total, f"print({text})"


def _modpow(rng: random.Random, d: int) -> tuple[str, int, str]:
    a = rng.randint(2, 10 ** (d + 1))
    b = rng.randint(10**d, 10 ** (d + 1))
    m = rng.randint(10 ** (d + 1) // 2, 10 ** (d + 2))
    question = f"What is the remainder when {a}^{b} is divided by {m}?"
    return question, pow(a, b, m), f"print(pow({a}, {b}, {m}))"


def _divisible(rng: random.Random, d: int) -> tuple[str, int, str]:
    n = rng.randint(10 ** (d + 1), 10 ** (d + 2))
    a, b = rng.sample(range(2, 10 + 8 * d), 2)
    lcm = math.lcm(a, b)
    kind = rng.choice(("or", "but_not", "neither"))
    by_a, by_b, by_both = n // a, n // b, n // lcm
    if kind == "or":
        question = f"How many integers from 1 to {n} are divisible by {a} or {b}?"
        answer, test = by_a + by_b - by_both, f"k % {a} == 0 or k % {b} == 0"
    elif kind == "but_not":
        question = f"How many integers from 1 to {n} are divisible by {a} but not by {b}?"
        answer, test = by_a - by_both, f"k % {a} == 0 and k % {b} != 0"
    else:
        question = f"How many integers from 1 to {n} are divisible by neither {a} nor {b}?"
        answer, test = n - (by_a + by_b - by_both), f"k % {a} != 0 and k % {b} != 0"
    code = f"print(sum(1 for k in range(1, {n} + 1) if {test}))"
    return question, answer, code


def _primes(rng: random.Random, d: int) -> tuple[str, int, str]:
    n = rng.randint(10 ** (d + 1) // 2, 10 ** (d + 1))
    question = f"How many prime numbers are less than or equal to {n}?"
    code = (
        f"n = {n}\n"
        "sieve = bytearray([1]) * (n + 1)\n"
        "sieve[0:2] = b'\\x00\\x00'\n"
        "for p in range(2, int(n ** 0.5) + 1):\n"
        "    if sieve[p]:\n"
        "        sieve[p * p :: p] = bytearray(len(range(p * p, n + 1, p)))\n"
        "print(sum(sieve))"
    )
    return question, _count_primes(n), code


def _count_primes(n: int) -> int:
    if n < 2:
        return 0
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(n) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, n + 1, p)))
    return sum(sieve)


_GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, int, str]]] = {
    "arithmetic": _arithmetic,
    "modpow": _modpow,
    "divisible": _divisible,
    "primes": _primes,
}
