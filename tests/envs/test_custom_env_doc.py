"""docs/custom-env.md shows the code of the tests: each block marked `<!-- file: PATH -->` is that
file, each `<!-- excerpt: PATH -->` block is part of it, and the game stays under 60 lines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "custom-env.md"
MARKED_BLOCK = re.compile(r"<!-- (file|excerpt): (\S+) -->\n```[a-z]*\n(.*?)```", re.DOTALL)


def marked_blocks() -> list[tuple[str, str, str]]:
    return MARKED_BLOCK.findall(DOC.read_text())


def test_the_tutorial_code_is_the_tested_code():
    blocks = marked_blocks()
    shown = {path for kind, path, _ in blocks if kind == "file"}
    assert shown == {
        "tests/custom_env_pkg/spear_example_envs/guess.py",
        "tests/custom_env_pkg/spear_example_envs/shop.py",
        "tests/custom_env_pkg/guess.yaml",
        "tests/custom_env_pkg/shop.yaml",
    }
    for kind, path, code in blocks:
        text = (ROOT / path).read_text()
        if kind == "file":
            assert code == text, f"docs/custom-env.md's copy of {path} differs from the file"
        else:
            assert code in text, f"docs/custom-env.md's excerpt of {path} is not in the file"


def test_the_text_game_is_under_60_lines():
    game = ROOT / "tests/custom_env_pkg/spear_example_envs/guess.py"
    assert len(game.read_text().splitlines()) < 60
