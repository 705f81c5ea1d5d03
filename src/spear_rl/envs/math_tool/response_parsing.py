"""Reading a math agent's response: its first tool call, or its final `\\boxed{}` answer.

Tool-call formats (`tool_format`):
- ``hermes`` (Qwen and most chat models): ``<tool_call>{"name": "python", "arguments": {"code":
  "..."}}</tool_call>``; `arguments` may also be a JSON string (OpenAI style). A missing closing tag
  at the very end is accepted (generation often stops on it).
- ``markdown`` (models without a tool format): a fenced block tagged ``python`` or ``py``.
- ``auto``: both; whichever comes first in the response.

Rules (model text is untrusted; nothing here raises):
- the first tool call is the action and everything else in the response is ignored, a `\\boxed{}`
  answer included: the model answers after it has seen the tool's output (the usual convention of
  stopping generation at the end of a tool call);
- otherwise the last complete `\\boxed{...}` (balanced braces, non-empty) is the answer;
- a hermes tool call whose JSON is broken is a `malformed` action: an invalid turn whose feedback
  says what was wrong;
- no tool call and no answer, or more than MAX_PARSE_CHARS characters: None (an invalid turn).

Each search is linear in the reply's length (each pattern matches at its first opening or fails
within the run of characters after it; `extract_boxed` is one pass), so a hostile reply up to the
cap costs milliseconds (`tests/envs/test_parsing.py` times 400k-character ones).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from spear_rl.envs.parsing import MAX_PARSE_CHARS
from spear_rl.envs.tool_calls import (
    HERMES_CALL_RE,
    BadToolCall,
    ToolCall,
    function_schema,
    read_tool_call,
)
from spear_rl.envs.tool_calls import format_tool_call as format_hermes_call

TOOL_FORMATS = ("auto", "hermes", "markdown")
TOOL_NAME = "python"
MAX_ANSWER_CHARS = 1000

_MARKDOWN = re.compile(r"```(?:python|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


@dataclass(frozen=True)
class ParsedResponse:
    kind: str  # "tool" | "answer" | "malformed"
    text: str  # the code, the answer, or what is wrong with the tool call


def python(code: str) -> str:
    """Run Python code in a sandbox and return what it prints.

    Args:
        code: the program to run; print() what you need
    """
    raise NotImplementedError("MathToolEnv runs the code in its sandbox")  # a schema, never called


def parse_response(text: str, tool_format: str = "auto") -> ParsedResponse | None:
    """The action in a response (see the module docstring), or None for an invalid turn."""
    if tool_format not in TOOL_FORMATS:
        raise ValueError(
            f"tool_format must be one of {', '.join(TOOL_FORMATS)}; got {tool_format!r}"
        )
    if not isinstance(text, str) or len(text) > MAX_PARSE_CHARS:
        return None
    tool = first_tool_call(text, tool_format)
    if tool is not None:
        return tool
    answer = read_answer(text)
    return None if answer is None else ParsedResponse("answer", answer)


def read_answer(text: str) -> str | None:
    """The final `\\boxed{}` answer, or None when there is no usable one."""
    answer = extract_boxed(text)
    if answer is None or len(answer) > MAX_ANSWER_CHARS or "\ufffd" in answer:
        return None
    return answer


def first_tool_call(text: str, tool_format: str = "auto") -> ParsedResponse | None:
    found: list[tuple[int, ParsedResponse]] = []
    if tool_format in ("auto", "hermes"):
        match = HERMES_CALL_RE.search(text)
        if match:
            found.append((match.start(), _read_hermes(match.group(1))))
    if tool_format in ("auto", "markdown"):
        match = _MARKDOWN.search(text)
        if match:
            found.append((match.start(), ParsedResponse("tool", match.group(1).strip("\n"))))
    return min(found, key=lambda item: item[0])[1] if found else None


def _read_hermes(body: str) -> ParsedResponse:
    """A Hermes call read by the shared tool-call reader against the one tool's schema."""
    call: ToolCall | BadToolCall = read_tool_call(body, {TOOL_NAME: python_schema()})
    if isinstance(call, BadToolCall):
        return ParsedResponse("malformed", call.reason)
    return ParsedResponse("tool", call.arguments["code"])


def extract_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (nested braces balanced), stripped; None if none.

    One pass with a brace stack, so hostile text full of unclosed boxes stays linear.
    """
    box_openings = {match.end() - 1 for match in _BOXED.finditer(text)}
    if not box_openings:
        return None
    stack: list[int] = []
    last = None
    for position, char in enumerate(text):
        if char == "{":
            stack.append(position)
        elif char == "}" and stack:
            opening = stack.pop()
            if opening in box_openings:
                content = text[opening + 1 : position].strip()
                if content:
                    last = content
    return last


def format_tool_call(code: str, tool_format: str = "hermes") -> str:
    """A tool call in the given format (what the expert and the system prompt show)."""
    if tool_format == "markdown":
        return f"```python\n{code}\n```"
    return format_hermes_call(TOOL_NAME, {"code": code})


@functools.cache
def python_schema() -> dict:
    """The JSON schema of the one tool (built on first use: it imports transformers)."""
    return function_schema(python)
