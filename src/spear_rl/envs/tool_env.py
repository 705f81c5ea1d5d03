"""`ToolEnv`: the base of envs whose actions are function calls, the chat-template way.

A subclass lists its tools (Python functions with type hints and a docstring whose `Args:` section
describes each argument; their JSON schemas come from `transformers.utils.get_json_schema`) and
implements `_reset` and `final_answer`. Each model turn is then one of:

- a tool call, ``<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>`` (Qwen /
  Hermes style; `arguments` may also be a JSON string): the function runs and what it returns is
  the next observation, sent back as a `tool` message; reward `tool_reward` (0); the episode goes
  on; `info["tool_call"]` is True, so the call counts for the tool-call reward. Only the first
  call of a response runs. A tool that raises returns its error as the observation (a valid call
  that failed: `info["tool_error"]`); output longer than `max_tool_output_chars` is cut;
- a final answer, ``<answer>...</answer>`` by default (`parse_answer`): `final_answer(text)`
  scores it and usually ends the episode;
- a call that cannot run (broken JSON, not an object, unknown tool, missing / unexpected /
  ill-typed arguments): an invalid turn (`valid` and `parsed` False) whose feedback says what was
  wrong; nothing runs;
- anything else (no call, no answer, a response over MAX_PARSE_CHARS): an invalid turn.

How the model learns about the tools (`tool_prompt`): "auto" hands the schemas to the chat
template when it renders tools (Qwen2.5 and most tool-capable models) and otherwise appends a
description to the system prompt; "system" always appends it; "none" leaves the tools to
`instructions` (which then must describe them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from spear_rl.envs.base import Env, StepResult
from spear_rl.envs.parsing import MAX_PARSE_CHARS
from spear_rl.envs.tool_calls import (
    BadToolCall,
    ToolCall,
    find_hermes_call,
    format_tool_call,
    function_schema,
    read_tool_call,
)

TOOL_PROMPTS = ("auto", "system", "none")
MAX_ANSWER_CHARS = 1000
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"


class ToolEnv(Env):
    """An env whose agent calls Python functions (see the module docstring)."""

    observation_role = "tool"
    #: what the agent is and how it answers; the tool descriptions are added (see `tool_prompt`)
    instructions: str = ""
    #: the tools: functions (or bound methods) with type hints and an `Args:` docstring
    tools: Sequence[Callable[..., Any]] = ()
    #: "auto" | "system" | "none": where the tool schemas are shown (module docstring)
    tool_prompt: str = "auto"
    #: env reward of a tool call (the tool-call bonus is the trainer's, on top)
    tool_reward: float = 0.0
    #: tool output beyond this many characters is cut (model context is finite)
    max_tool_output_chars: int = 2000
    invalid_feedback: str = (
        "Invalid response: either call a tool with "
        '<tool_call>{"name": ..., "arguments": {...}}</tool_call>, '
        "or give the final answer as <answer>...</answer>."
    )

    def __init__(self) -> None:
        super().__init__()
        self.tool_calls = 0  # tool calls run this episode
        self._schemas: dict[str, dict[str, Any]] | None = None

    # ---- to implement ------------------------------------------------------------------------
    def final_answer(self, answer: str) -> StepResult:
        """Score the final answer (set `self.won`); the episode usually ends here."""
        raise NotImplementedError(f"{type(self).__name__} must implement final_answer(answer)")

    # ---- tools ---------------------------------------------------------------------------------
    @property
    def tool_schemas(self) -> dict[str, dict[str, Any]]:
        """Tool name -> JSON schema, built from `tools` on first use."""
        if self._schemas is None:
            if not self.tools:
                raise ValueError(f"{type(self).__name__} lists no tools")
            schemas = [function_schema(fn) for fn in self.tools]
            self._schemas = {s["function"]["name"]: s for s in schemas}
            if len(self._schemas) != len(schemas):
                raise ValueError(f"{type(self).__name__}: two tools share a name")
        return self._schemas

    def call_tool(self, call: ToolCall) -> StepResult:
        """Run a checked call; its output is the next observation."""
        fn = {getattr(f, "__name__", ""): f for f in self.tools}[call.name]
        try:
            output, failed = fn(**call.arguments), False
        except Exception as err:  # the tool's error is the model's to read, not a crash
            output, failed = f"Error: {type(err).__name__}: {err}", True
        self.tool_calls += 1
        info = {"tool_call": True, "tool": call.name, "tool_error": failed}
        return StepResult(self.cut_output(output), self.tool_reward, False, info)

    def cut_output(self, output: Any) -> str:
        """Tool output as text: strings as they are, other values as JSON; cut when too long."""
        if isinstance(output, str):
            text = output
        else:
            try:
                text = json.dumps(output, ensure_ascii=False, default=str)
            except (TypeError, ValueError):
                text = str(output)
        # a tool may return text no tokenizer can encode (lone surrogates): replace those
        text = text.encode("utf-8", "replace").decode("utf-8")
        limit = self.max_tool_output_chars
        if len(text) > limit:
            text = f"{text[:limit]}\n[... {len(text) - limit} more characters cut]"
        return text

    # ---- prompts -------------------------------------------------------------------------------
    @property
    def system_prompt(self) -> str:  # type: ignore[override]
        """The instructions, plus the tool descriptions unless the chat template shows them."""
        return self.prompt_setup(template_renders_tools=False)[0]

    def prompt_setup(self, template_renders_tools: bool) -> tuple[str, list[dict] | None]:
        if self.tool_prompt not in TOOL_PROMPTS:
            raise ValueError(f"tool_prompt must be one of {', '.join(TOOL_PROMPTS)}")
        schemas = list(self.tool_schemas.values())
        if self.tool_prompt == "none":
            return self.instructions, None
        if self.tool_prompt == "auto" and template_renders_tools:
            return self.instructions, schemas
        return f"{self.instructions}\n\n{describe_tools(schemas)}".strip(), None

    # ---- parsing (model text is untrusted: nothing here raises) --------------------------------
    def parse_action(self, response: str) -> str | None:
        """'tool:<call as JSON>', 'answer:<text>', 'malformed:<what is wrong>', or None."""
        if not isinstance(response, str) or len(response) > MAX_PARSE_CHARS:
            return None
        call = self.find_tool_call(response)
        if isinstance(call, ToolCall):
            return "tool:" + json.dumps({"name": call.name, "arguments": call.arguments})
        if isinstance(call, BadToolCall):
            return "malformed:" + call.reason
        answer = self.parse_answer(response)
        return None if answer is None else "answer:" + answer

    def find_tool_call(self, response: str) -> ToolCall | BadToolCall | None:
        """The first tool call of a response (Hermes style), checked against the schemas."""
        match = find_hermes_call(response)
        return None if match is None else read_tool_call(match.group(1), self.tool_schemas)

    def parse_answer(self, response: str) -> str | None:
        """The text of the last `<answer>...</answer>`, stripped; None when there is none."""
        end = response.rfind(_ANSWER_CLOSE)
        start = response.rfind(_ANSWER_OPEN, 0, max(end, 0))
        if end < 0 or start < 0:
            return None
        answer = response[start + len(_ANSWER_OPEN) : end].strip()
        if not answer or len(answer) > MAX_ANSWER_CHARS or "\ufffd" in answer:
            return None
        return answer

    def _step_action(self, action: str) -> StepResult:
        kind, _, text = action.partition(":")
        if kind == "tool":
            call = json.loads(text)
            return self.call_tool(ToolCall(call["name"], call["arguments"]))
        if kind == "answer":
            result = self.final_answer(text)
            result.info.setdefault("tool_call", False)
            return result
        # a call that could not run is no action: a void turn for the incomplete filter
        info = {"valid": False, "tool_call": False, "parsed": False}
        info["feedback"] = f"Invalid tool call: {text}."
        return StepResult(self.observation, self.invalid_turn_reward, False, info)

    def reset(self, seed: int) -> str:
        self.tool_calls = 0
        return super().reset(seed)

    # ---- expert helpers --------------------------------------------------------------------------
    def format_action(self, action: str, thought: str = "") -> str:
        """Expert actions are whole responses (a tool call or an answer); a thought goes first."""
        return f"{thought}\n{action}" if thought else action

    @staticmethod
    def tool_call_text(name: str, **arguments: Any) -> str:
        """A tool call as the model should write it, e.g. for `expert_action`."""
        return format_tool_call(name, arguments)

    @staticmethod
    def answer_text(answer: str) -> str:
        """A final answer in the default format."""
        return f"{_ANSWER_OPEN}{answer}{_ANSWER_CLOSE}"


def describe_tools(schemas: Sequence[dict[str, Any]]) -> str:
    """The tool block for a system prompt, for chat templates that do not render tools."""
    lines = ["You can call these tools (JSON schemas):"]
    lines += [json.dumps(schema["function"], ensure_ascii=False) for schema in schemas]
    lines.append(
        'To call one, reply with <tool_call>{"name": <tool name>, "arguments": {...}}</tool_call>; '
        "its result comes back in the next message."
    )
    return "\n".join(lines)
