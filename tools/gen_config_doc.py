"""Regenerate docs/config.md from the config dataclasses (defaults and inline comments).

python tools/gen_config_doc.py
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from spear_rl.train.config import Config

FIELD = re.compile(r"^\s+(\w+): [^=]+= (.+?)(?:\s+#\s*(.*))?$")


def section_rows(cls: type) -> list[str]:
    comments, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        match = FIELD.match(line)
        if match:
            comments[match.group(1)] = " ".join([*above, match.group(3) or ""]).strip()
            above = []
        elif line.strip().startswith("#"):
            above.append(line.strip().lstrip("# ").strip())
        else:
            above = []
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"| `{f.name}` | `{default!r}` | {comments.get(f.name, '')} |")
    return rows


def main() -> None:
    lines = [
        "# Configuration",
        "",
        "Generated from the code by `python tools/gen_config_doc.py`; the defaults below are the",
        "code's. A recipe YAML sets any of these per section and may `inherit:` other recipes;",
        "`--section.key=value` overrides on the command line. Unknown keys and ill-typed values fail",
        "with the key named.",
        "",
    ]
    for f in dataclasses.fields(Config):
        lines += [f"## `{f.name}`", "", "| key | default | meaning |", "|---|---|---|"]
        lines += section_rows(f.default_factory().__class__)
        lines.append("")
    out = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
