"""ToolEnv: schemas from Python functions, Hermes tool calls read from untrusted text and checked
against the schemas, results as tool messages, and what the prompt shows for each kind of template."""

from __future__ import annotations

import json

import pytest

from spear_rl import StepResult, ToolEnv
from spear_rl.envs.parsing import MAX_PARSE_CHARS
from spear_rl.envs.tool_calls import BadToolCall, ToolCall, function_schema, read_tool_call

RAN: list[tuple[str, dict]] = []


def lookup(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    RAN.append(("lookup", {"city": city}))
    if city == "Atlantis":
        raise KeyError(city)
    return "x" * 5000 if city == "Verbose" else f"sunny in {city}"


def add(a: int, b: int, scale: float = 1.0) -> float:
    """Add two integers and scale the sum.

    Args:
        a: the first
        b: the second
        scale: a factor
    """
    RAN.append(("add", {"a": a, "b": b, "scale": scale}))
    return (a + b) * scale


class Weather(ToolEnv):
    name = "test-weather"
    instructions = "Answer with <answer>...</answer>."
    tools = (lookup, add)
    max_tool_output_chars = 100

    def _reset(self, seed: int) -> str:
        self.task = "What is the weather in Paris?"
        return "Ask away."

    def final_answer(self, answer: str) -> StepResult:
        self.won = "sunny" in answer
        return StepResult("Thanks.", float(self.won), True)


def call(name, arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


@pytest.fixture
def env():
    RAN.clear()
    env = Weather()
    env.reset(0)
    return env


def test_schemas_come_from_type_hints_and_docstrings():
    schema = function_schema(add)["function"]
    assert (
        schema["name"] == "add" and schema["description"] == "Add two integers and scale the sum."
    )
    assert schema["parameters"]["properties"]["a"] == {
        "type": "integer",
        "description": "the first",
    }
    assert schema["parameters"]["required"] == ["a", "b"]

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="tool 'undocumented': cannot build its JSON schema"):
        function_schema(undocumented)


def test_a_tool_call_runs_and_its_result_is_a_tool_message(env):
    assert env.observation_role == "tool"
    result = env.step(
        "Let me look. " + call("lookup", {"city": "Paris"}) + " and <answer>x</answer>"
    )
    assert (result.observation, result.reward, result.done) == ("sunny in Paris", 0.0, False)
    assert result.info["valid"] and result.info["tool_call"] and result.info["parsed"]
    assert RAN == [("lookup", {"city": "Paris"})] and env.tool_calls == 1
    answer = env.step("<answer>It is sunny.</answer>")
    assert (answer.reward, answer.done, answer.info["won"]) == (1.0, True, True)
    assert answer.info["valid"] and not answer.info["tool_call"]


def test_openai_style_string_arguments_and_a_missing_closing_tag_are_accepted(env):
    body = json.dumps({"name": "add", "arguments": json.dumps({"a": 2, "b": 3})})
    assert env.step(f"<tool_call>{body}</tool_call>").observation == "5.0"
    unclosed = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1, "scale": 2}}'
    assert env.step(unclosed).observation == "4"  # an int is a number: scale=2 stays 2


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            '<tool_call>{"name": "lookup", "arguments": {"city": Paris}}</tool_call>',
            "not valid JSON",
        ),
        ("<tool_call>" + "[" * 10_000 + "</tool_call>", "not valid JSON"),
        ('<tool_call>["lookup"]</tool_call>', "not a JSON object"),
        (call("bash", {"cmd": "ls"}), "unknown tool 'bash': the tools are 'lookup', 'add'"),
        ('<tool_call>{"arguments": {}}</tool_call>', "unknown tool (no name)"),
        (call("add", {"a": 1}), "bad arguments for 'add': missing 'b'"),
        (call("add", {"a": 1, "b": 2, "c": 3}), "unexpected 'c'"),
        (call("add", {"a": "1", "b": 2}), "'a' must be integer, got str"),
        (call("add", {"a": True, "b": 2}), "'a' must be integer, got bool"),
        (
            '<tool_call>{"name": "add", "arguments": "{oops"}</tool_call>',
            "a string that is not JSON",
        ),
        ('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "lookup", "arguments": {"city": "\\ud800"}}', "invalid unicode"),
        (call("add", json.dumps({"a": 1, "b": 2, "\ud800": 1})), "invalid unicode"),
    ],
)
def test_a_call_that_cannot_run_is_an_invalid_void_turn_that_says_why(env, response, reason):
    result = env.step(response)
    assert not result.info["valid"] and not result.info["tool_call"]
    assert result.info["parsed"] is False  # a void turn for Dr.BoT's incomplete filter
    assert reason in result.info["feedback"]
    assert (result.reward, result.done, result.observation) == (0.0, False, "Ask away.")
    assert RAN == [] and env.tool_calls == 0


@pytest.mark.parametrize(
    "response",
    [
        "no call, no answer",
        "<answer></answer>",
        "\x00\ufffd<tool_",
        "<answer>" + "y" * 2000 + "</answer>",
        call("lookup", {"city": "Paris"}) + "z" * MAX_PARSE_CHARS,
    ],
)
def test_anything_else_is_an_invalid_turn(env, response):
    result = env.step(response)
    assert not result.info["valid"] and not result.info["tool_call"]
    assert "<tool_call>" in result.info["feedback"] and "<answer>" in result.info["feedback"]
    assert RAN == []


def test_tool_errors_and_huge_outputs_come_back_as_observations(env):
    failed = env.step(call("lookup", {"city": "Atlantis"}))
    assert failed.observation == "Error: KeyError: 'Atlantis'"
    assert failed.info["tool_call"] and failed.info["tool_error"] and failed.info["valid"]
    huge = env.step(call("lookup", {"city": "Verbose"}))
    assert huge.observation == "x" * 100 + "\n[... 4900 more characters cut]"
    assert env.cut_output("a\ud800b") == "a?b"  # encodable by any tokenizer


def test_read_tool_call_is_total_on_hostile_bodies():
    schemas = {"add": function_schema(add)}
    for body in ["", "null", "{", '{"name": 5}', '{"name": "add", "arguments": null}', "\ufffd"]:
        assert isinstance(read_tool_call(body, schemas), BadToolCall)
    assert read_tool_call('{"name": "add", "parameters": {"a": 1, "b": 2}}', schemas) == ToolCall(
        "add", {"a": 1, "b": 2}
    )


def test_the_prompt_describes_the_tools_unless_the_template_renders_them(env):
    plain, no_tools = env.prompt_setup(template_renders_tools=False)
    assert no_tools is None and plain == env.system_prompt
    assert plain.startswith(env.instructions) and '"name": "lookup"' in plain
    instructions, schemas = env.prompt_setup(template_renders_tools=True)
    assert instructions == env.instructions
    assert [s["function"]["name"] for s in schemas] == ["lookup", "add"]


def test_prompt_rendering_hands_schemas_to_a_template_that_renders_tools(env):
    from spear_rl.models.tokenizer import build_tiny_tokenizer
    from spear_rl.rollout.prompts import (
        build_turn_prompt,
        env_prompt_setup,
        template_renders_tools,
    )

    chatml = build_tiny_tokenizer(["hello"], 300)
    assert not template_renders_tools(chatml)
    assert env_prompt_setup(chatml, env) == (env.system_prompt, None)
    with_tools = build_tiny_tokenizer(["hello"], 300)
    with_tools.chat_template = (
        "{% if tools %}<|im_start|>system\n{% for t in tools %}{{ t.function.name }};"
        "{% endfor %}<|im_end|>\n{% endif %}" + chatml.chat_template
    )
    assert template_renders_tools(with_tools)
    system, schemas = env_prompt_setup(with_tools, env)
    assert system == env.instructions and len(schemas) == 2
    ids = build_turn_prompt(with_tools, system, env.task, [], env.observation, None, schemas)
    text = with_tools.decode(ids)
    assert "lookup;add;" in text and '"name": "lookup"' not in text


class Notebook(ToolEnv):
    """A tool that reads the episode's state: a bound method, listed in __init__."""

    def __init__(self) -> None:
        super().__init__()
        self.tools = [self.read_page]
        self.secret = ""

    def read_page(self, page: int) -> str:
        """Read a page.

        Args:
            page: the page number
        """
        return self.secret if page == 2 else "blank"

    def _reset(self, seed: int) -> str:
        self.secret = f"code {seed}"
        return "closed"

    def final_answer(self, answer: str) -> StepResult:
        return StepResult("done", 0.0, True)


def test_a_bound_method_is_a_tool_over_the_episodes_state():
    env = Notebook()
    env.reset(7)
    assert list(env.tool_schemas) == ["read_page"]
    assert "self" not in env.tool_schemas["read_page"]["function"]["parameters"]["properties"]
    assert env.step(call("read_page", {"page": 2})).observation == "code 7"
    assert env.tool_calls == 1
