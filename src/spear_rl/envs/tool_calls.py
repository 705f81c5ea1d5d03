"""Function-calling plumbing for tool-using envs: schemas from Python functions, and the model's
tool call read from its text (Qwen / Hermes style ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>``), checked against the schemas.

Model text is untrusted: nothing here raises on it. A call that cannot be used (broken JSON, not an
object, unknown tool, missing / unexpected / ill-typed arguments) comes back as a `BadToolCall`
whose `reason` is one line the env shows the model as feedback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# "<tool_call>" up to its closing tag; a missing closing tag at the very end is accepted, since
# generation often stops on it.
HERMES_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class BadToolCall:
    reason: str  # what is wrong, for the model's feedback


def function_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a tool function, in the chat-template ("type": "function") format.

    The function needs type hints on every argument and a Google-style docstring whose `Args:`
    section describes each one (that text is what the model reads about the tool).
    """
    from transformers.utils import get_json_schema

    try:
        return get_json_schema(fn)
    except Exception as err:  # transformers raises its own parsing exceptions
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(
            f"tool {name!r}: cannot build its JSON schema ({err}); give it type hints on every "
            "argument and a docstring with a one-line summary and an 'Args:' section"
        ) from None


def format_tool_call(name: str, arguments: Mapping[str, Any]) -> str:
    """A tool call as the model should write it (used by experts and in prompts)."""
    call = json.dumps({"name": name, "arguments": dict(arguments)})
    return f"<tool_call>\n{call}\n</tool_call>"


def find_hermes_call(text: str) -> re.Match[str] | None:
    """The first `<tool_call>` block of a response (its body is group 1), or None."""
    return HERMES_CALL_RE.search(text)


def read_tool_call(body: str, schemas: Mapping[str, dict[str, Any]]) -> ToolCall | BadToolCall:
    """Parse a `<tool_call>` body and check it against `schemas` (tool name -> function schema)."""
    expected = _expected_shape(schemas)
    try:
        call = json.loads(body.strip())
    except (json.JSONDecodeError, RecursionError) as err:
        message = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        return BadToolCall(f"the tool call is not valid JSON ({message}); expected {expected}")
    if not isinstance(call, dict):
        return BadToolCall(f"the tool call is not a JSON object; expected {expected}")
    if not _is_valid_unicode(call):
        return BadToolCall("the tool call holds invalid unicode (a lone surrogate escape)")
    name = call.get("name")
    if not isinstance(name, str) or name not in schemas:
        known = ", ".join(repr(n) for n in schemas)
        only = "the only tool is" if len(schemas) == 1 else "the tools are"
        shown = repr(name) if isinstance(name, str) else "(no name)"
        return BadToolCall(f"unknown tool {shown[:80]}: {only} {known}")
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI style: the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            return BadToolCall(f"the arguments of {name!r} are a string that is not JSON")
        if not _is_valid_unicode(arguments):
            return BadToolCall("the tool call holds invalid unicode (a lone surrogate escape)")
    if not isinstance(arguments, dict):
        return BadToolCall(f"the arguments of {name!r} must be a JSON object")
    problem = check_arguments(arguments, schemas[name])
    if problem is not None:
        return BadToolCall(f"bad arguments for {name!r}: {problem}")
    return ToolCall(name, arguments)


def check_arguments(arguments: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """What is wrong with `arguments` for a function schema, or None when they fit."""
    parameters = schema.get("function", schema).get("parameters", {})
    properties = parameters.get("properties", {})
    missing = [p for p in parameters.get("required", []) if p not in arguments]
    if missing:
        return "missing " + ", ".join(repr(p) for p in missing)
    unexpected = [a for a in arguments if a not in properties]
    if unexpected:
        allowed = ", ".join(repr(p) for p in properties) or "none"
        return f"unexpected {', '.join(repr(a)[:40] for a in unexpected)} (it takes {allowed})"
    for key, value in arguments.items():
        problem = _type_problem(value, properties[key])
        if problem:
            return f"{key!r} {problem}"
    return None


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _type_problem(value: Any, spec: dict[str, Any]) -> str | None:
    if value is None and spec.get("nullable"):
        return None
    if "enum" in spec and value not in spec["enum"]:
        return f"must be one of {', '.join(json.dumps(e) for e in spec['enum'])}"
    types = spec.get("type")
    if types is None:
        return None
    types = [types] if isinstance(types, str) else list(types)
    if not any(_JSON_TYPES.get(t, lambda _v: True)(value) for t in types):
        return f"must be {' or '.join(types)}, got {type(value).__name__}"
    if isinstance(value, list) and isinstance(spec.get("items"), dict):
        for item in value:
            problem = _type_problem(item, spec["items"])
            if problem:
                return f"has an item that {problem}"
    return None


def _is_valid_unicode(value: Any) -> bool:
    """JSON escapes can spell lone surrogates (\\ud800), which no tokenizer can encode."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _expected_shape(schemas: Mapping[str, dict[str, Any]]) -> str:
    if len(schemas) != 1:
        return '{"name": <tool name>, "arguments": {...}}'
    name, schema = next(iter(schemas.items()))
    properties = schema.get("function", schema).get("parameters", {}).get("properties", {})
    arguments = ", ".join(f'"{p}": "..."' for p in properties)
    return f'{{"name": "{name}", "arguments": {{{arguments}}}}}'
