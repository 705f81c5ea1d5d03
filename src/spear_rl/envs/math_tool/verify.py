"""Checking a final answer against the gold one: a plain-text match first, then math-verify.

math-verify (`pip install 'spear-rl[math]'`) parses both sides into sympy and compares them
(`\\frac{1}{2}` = `0.5` = `1/2`, `x+1` = `1+x`, `12,345` = `12345`). Its timeouts use SIGALRM, which
only works in the main thread; in a worker thread (parallel env steps) they are off and overlong
answers are compared as text only, so a hostile answer cannot stall sympy for long.
"""

from __future__ import annotations

import logging
import re
import threading

logger = logging.getLogger(__name__)

# Longer answers are compared as text only (sympy on adversarial input can take very long).
MAX_SYMBOLIC_CHARS = 300
_TIMEOUT_S = 5
_GROUPED_NUMBER = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")


class _OwnTimeoutLogic(logging.Filter):
    """Drops math-verify's "Timeout is disabled" warning: off-main-thread we bound the answer's
    length instead (MAX_SYMBOLIC_CHARS), so the warning only adds noise to a training log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


# Loggers are named, so the filter can be attached before math-verify is (lazily) imported.
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_OwnTimeoutLogic())


def require_math_verify():
    """The math_verify module, or an ImportError that says how to install it."""
    try:
        import math_verify
    except ImportError as err:
        raise ImportError(
            "the math_tool env checks answers with math-verify: pip install 'spear-rl[math]' "
            "(or pip install math-verify==0.9.0)"
        ) from err
    return math_verify


def normalize_answer(answer: str) -> str:
    """Text form for the plain match: no $, \\text{}, spaces, thousands commas or final period."""
    text = _TEXT_WRAPPER.sub(r"\1", answer.strip().strip("$"))
    for noise in ("\\!", "\\,", "\\;", "\\ ", " "):
        text = text.replace(noise, "")
    text = text.rstrip(".").lower()
    if _GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    return text


def answers_match(prediction: str, gold: str) -> bool:
    """Whether a model's final answer equals the gold answer. Never raises."""
    if not isinstance(prediction, str) or not prediction.strip():
        return False
    if normalize_answer(prediction) == normalize_answer(gold):
        return True
    if len(prediction) > MAX_SYMBOLIC_CHARS:
        return False
    math_verify = require_math_verify()
    in_main = threading.current_thread() is threading.main_thread()
    timeout = _TIMEOUT_S if in_main else None
    try:
        gold_parsed = math_verify.parse(_as_latex(gold), parsing_timeout=timeout)
        predicted = math_verify.parse(f"\\boxed{{{prediction}}}", parsing_timeout=timeout)
        if not gold_parsed or not predicted:
            return False
        return bool(math_verify.verify(gold_parsed, predicted, timeout_seconds=timeout))
    except Exception as err:  # sympy can fail in many ways on model text
        logger.debug("math-verify could not compare %r with %r: %s", prediction, gold, err)
        return False


def _as_latex(gold: str) -> str:
    return gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
