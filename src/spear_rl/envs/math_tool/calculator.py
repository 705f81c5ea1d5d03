"""The `calculator` interpreter: Python arithmetic, read with `ast` and never executed.

For machines without the sandbox (bubblewrap: Linux only, installed as root), e.g. the quickstart on
a laptop. The model still writes Python (`print(4821 * 397 - 12004)`), but nothing it writes runs:
the code is parsed, and only this file's evaluator walks the tree. It accepts

- statements: `name = expr`, `name += expr` (and the other arithmetic operators), `print(expr, ...)`
  and bare expressions;
- expressions: int and float literals, names assigned before, `+ - * / // % **`, unary `+ -`,
  parentheses, and the calls `abs round min max pow int float`.

Anything else (`import`, loops, strings, attributes, ...) is an error the model reads, like a
Python exception. Every intermediate result is bounded (`MAX_INT_BITS`), so no input can take
long or much memory: the cost is linear in the code's size.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable

from spear_rl.envs.math_tool.sandbox import ToolResult, check_code_input, truncate_middle

ISOLATION = "calculator"  # ToolResult.isolation: nothing ran in a process
MAX_INT_BITS = 10_000  # about 3,000 decimal digits; larger results are an error
MAX_NODES = 5_000  # syntax-tree nodes in one call
SUPPORTED = (
    "the calculator runs Python arithmetic only: int and float numbers, + - * / // % **, "
    "variables (x = ...), abs round min max pow int float, and print()"
)

Number = int | float

_BINARY: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "pow": pow,
    "int": int,
    "float": float,
}


class CalculatorError(Exception):
    """What the model reads, as Python would print an exception's last line."""


def run_calculator(
    code: str, max_output_chars: int = 2000, max_code_chars: int = 100_000
) -> ToolResult:
    """Evaluate `code` as a calculator; the result reads like `sandbox.run_code`'s."""
    started = time.monotonic()
    refused = check_code_input(code, max_code_chars)
    if refused is not None:
        return refused
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as err:
        message = f"SyntaxError: {err.msg} (line {err.lineno})"
        return ToolResult(message, False, "invalid_code", time.monotonic() - started, ISOLATION)
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes
        message = "SyntaxError: the code is too long or nested too deeply to parse"
        return ToolResult(message, False, "invalid_code", time.monotonic() - started, ISOLATION)
    printed: list[str] = []
    try:
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise CalculatorError(
                f"Error: the code is too large for the calculator (over {MAX_NODES} terms)"
            )
        _Evaluator(printed).run(tree)
        ok, reason, output = True, "ok", "".join(printed)
    except CalculatorError as err:
        ok, reason, output = False, "error", "".join(printed) + str(err)
    except RecursionError:
        ok, reason = False, "error"
        output = "".join(printed) + "Error: the expression is nested too deeply for the calculator"
    seconds = time.monotonic() - started
    return ToolResult(truncate_middle(output, max_output_chars), ok, reason, seconds, ISOLATION)


class _Evaluator:
    def __init__(self, printed: list[str]) -> None:
        self.names: dict[str, Number] = {}
        self.printed = printed

    def run(self, tree: ast.Module) -> None:
        for statement in tree.body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            value = self.value(node.value)
            for target in node.targets:
                self.names[target.id] = value  # type: ignore[union-attr]
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            if node.target.id not in self.names:
                raise CalculatorError(f"NameError: name {node.target.id!r} is not defined")
            self.names[node.target.id] = self.binary(
                node.op, self.names[node.target.id], self.value(node.value)
            )
        elif isinstance(node, ast.Assign):
            raise CalculatorError(f"Error: only plain names can be assigned (x = ...); {SUPPORTED}")
        elif isinstance(node, ast.Expr) and _is_print(node.value):
            call = node.value
            assert isinstance(call, ast.Call)
            if call.keywords:
                raise CalculatorError(f"Error: print() takes no keywords here; {SUPPORTED}")
            self.printed.append(" ".join(_text(self.value(arg)) for arg in call.args) + "\n")
        elif isinstance(node, ast.Expr):
            self.value(node.value)
        else:
            raise CalculatorError(f"Error: {_what(node)} is not supported; {SUPPORTED}")

    def value(self, node: ast.expr) -> Number:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _bounded(node.value)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise CalculatorError(f"NameError: name {node.id!r} is not defined")
            return self.names[node.id]
        if isinstance(node, ast.BinOp):
            return self.binary(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand = self.value(node.operand)
            return operand if isinstance(node.op, ast.UAdd) else -operand
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            function = _FUNCTIONS.get(node.func.id)
            if function is not None:
                args = [self.value(arg) for arg in node.args]
                if function is pow and len(args) == 2:
                    return self.binary(ast.Pow(), *args)
                return _apply(node.func.id, function, args)
        raise CalculatorError(f"Error: {_what(node)} is not supported; {SUPPORTED}")

    def binary(self, op: ast.operator, left: Number, right: Number) -> Number:
        function = _BINARY.get(type(op))
        if function is None:
            raise CalculatorError(f"Error: the operator {_what(op)} is not supported; {SUPPORTED}")
        # bound an integer power before computing it: 9 ** 9 ** 9 must not run
        if function is operator.pow and _int_power_bits(left, right) > MAX_INT_BITS:
            raise CalculatorError(f"OverflowError: the result has over {MAX_INT_BITS} bits")
        return _apply(_what(op), function, [left, right])


def _apply(name: str, function: Callable[..., Number], args: list[Number]) -> Number:
    try:
        return _bounded(function(*args))
    except ZeroDivisionError as err:
        raise CalculatorError(f"ZeroDivisionError: {err}") from None
    except OverflowError as err:
        raise CalculatorError(f"OverflowError: {err}") from None
    except (TypeError, ValueError) as err:
        raise CalculatorError(f"{type(err).__name__}: {name}: {err}") from None


def _int_power_bits(base: Number, exponent: Number) -> float:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return 0.0
    return exponent * math.log2(abs(base))


def _bounded(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(
            f"Error: a {type(value).__name__} result is not supported; {SUPPORTED}"
        )
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"OverflowError: the result has over {MAX_INT_BITS} bits")
    return value


def _text(value: Number) -> str:
    return repr(value)  # as print() shows an int or a float


def _is_print(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    )


def _what(node: ast.AST) -> str:
    """A short name for a construct the model used: `import`, `for` loop, the name `math.sqrt`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return f"the function {node.func.id}()"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return f"the call .{node.func.attr}()"
    if isinstance(node, ast.Constant):
        return f"a {type(node.value).__name__} constant"
    names = {
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Import: "import",
        ast.ImportFrom: "import",
        ast.For: "a for loop",
        ast.While: "a while loop",
        ast.FunctionDef: "def",
        ast.Attribute: "an attribute (x.y)",
    }
    return names.get(type(node), f"`{type(node).__name__}`")
