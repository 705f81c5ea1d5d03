"""Regenerate docs/config.md from the config dataclasses (each field's default, doc and checks).

python tools/gen_config_doc.py          # write docs/config.md
python tools/gen_config_doc.py --check  # exit 1 if docs/config.md is out of date (CI runs this)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from spear_rl.fields import choice_names
from spear_rl.train.config import Config

OUT = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def allowed(field: dataclasses.Field) -> str:
    """The field's allowed values in words: its choices or its numeric range."""
    meta = field.metadata
    if meta.get("choices") is not None:
        return " / ".join(f"`{name}`" for name in choice_names(meta["choices"]))
    bounds = [
        f"{symbol} {meta[key]}"
        for key, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if meta.get(key) is not None
    ]
    return ", ".join(bounds)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def section_rows(cls: type) -> list[str]:
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = f.metadata.get("doc", "")
        rows.append(f"| `{f.name}` | `{default!r}` | {cell(allowed(f))} | {cell(doc)} |")
    return rows


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from the code by `python tools/gen_config_doc.py`: each key is declared once, with",
        "its default, its allowed values and this line of documentation, in the module that uses it",
        "(`spear_rl.fields.setting`). A recipe YAML sets any of these per section and may `inherit:`",
        "other recipes; `--section.key=value` overrides on the command line. Unknown keys, ill-typed",
        "values and values outside the allowed ones fail when the config is loaded, naming the key.",
        "",
    ]
    for f in dataclasses.fields(Config):
        cls = f.default_factory().__class__
        summary = " ".join((cls.__doc__ or "").split())
        lines += [f"## `{f.name}`", "", summary, ""]
        lines += ["| key | default | allowed | meaning |", "|---|---|---|---|"]
        lines += section_rows(cls)
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    text = render()
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date: run python tools/gen_config_doc.py")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
