"""Reply parsing against hostile replies: same answers as the old regexes, work linear in length."""

from __future__ import annotations

import random
import re
import time

import pytest

from spear_rl.envs import parsing
from spear_rl.envs.math_tool import response_parsing
from spear_rl.envs.parsing import parse_tagged_action, tagged_blocks
from spear_rl.envs.webshop.actions import Rejection, check_action

# The definition the linear scan must reproduce (a lazy match from each opening tag).
REFERENCE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)


def test_tagged_blocks_equal_the_reference_regex_on_random_tag_soup():
    rng = random.Random(0)
    pieces = ["<action>", "</action>", "<ACTION>", "</Action>", "x", "<", "/", "action>", "\n"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(14)))
        assert tagged_blocks(text, limit=10**9) == REFERENCE.findall(text), text


def test_parse_tagged_action_rules():
    assert parse_tagged_action("<think>hm</think><action> go  north </action>") == "go north"
    assert parse_tagged_action("<action>a</action><action>b</action>") is None  # two blocks
    assert parse_tagged_action("<action><action>a</action>") == "<action>a"  # as the regex did
    assert parse_tagged_action("<action>   </action>") is None
    assert parse_tagged_action("<action>open</action" + "x" * 10) is None
    assert parse_tagged_action("<action>" + "x" * 10 + "</action>" + " " * 20_000) is None  # cap


HUGE = 400_000  # 20x the cap: the old lazy regex needed minutes on "<action>" repeated this long


def hostile_replies(length: int) -> dict[str, str]:
    def repeat(unit: str) -> str:
        return unit * (length // len(unit))

    return {
        "opening tags": repeat("<action>"),
        "opening tags, one close at the end": repeat("<action>") + "</action>",
        "tool_call openings": repeat("<tool_call>"),
        "python fences": repeat("```python"),
        "fences with spaces": repeat("```py" + " " * 40),
        "unclosed boxes": repeat("\\boxed{"),
        "braces": repeat("{"),
        "mixed": repeat("<tool_call>```py\n\\boxed{<action>"),
    }


@pytest.mark.parametrize("name", list(hostile_replies(100)))
def test_parsing_a_huge_hostile_reply_is_linear(monkeypatch, name):
    # lift the cap so the scan itself is measured; a linear parse of 400k characters takes
    # milliseconds, the old quadratic one took minutes: 2 s is a bound no machine load explains
    monkeypatch.setattr(parsing, "MAX_PARSE_CHARS", HUGE + 100)
    monkeypatch.setattr(response_parsing, "MAX_PARSE_CHARS", HUGE + 100)
    text = hostile_replies(HUGE)[name]
    start = time.perf_counter()
    parse_tagged_action(text)
    for tool_format in response_parsing.TOOL_FORMATS:
        response_parsing.parse_response(text, tool_format)
    assert time.perf_counter() - start < 2.0


def test_replies_over_the_cap_are_invalid_turns_without_a_search():
    text = "<action>" * (HUGE // 8)
    assert parse_tagged_action(text) is None
    assert response_parsing.parse_response(text) is None


def test_webshop_actions_longer_than_the_parser_cap_are_rejected_before_matching():
    verdict = check_action("search[" + "a]" * 50_000, view=None)  # never reaches the page
    assert isinstance(verdict, Rejection) and "at most 200 characters" in verdict.feedback
