"""Config fields that carry their own doc, allowed choices and range: one home per setting.

Every config dataclass of the package (the algos' own, the rollout's, the model's, the trainer's)
declares its fields with `setting(default, doc, ...)` and derives from `Settings`, whose
`__post_init__` checks every field against its declaration. The run config embeds these
dataclasses, `docs/config.md` is generated from the docs, and `spear train --help` points there, so a
default, its check and its documentation are written once.

Choices are a tuple, or a `Registry` (read when checked, so a registered name is valid everywhere).
Numbers are checked finite, then against `ge` / `gt` / `le` / `lt`. Checks that involve two fields
go in a `check(self)` method of the class that owns both fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, ClassVar

from spear_rl.registry import Registry


class ConfigError(ValueError):
    """A bad recipe, override or setting; the message names the key and what to do."""


def setting(
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] | Registry | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with its one-line doc, its allowed choices and its numeric range."""
    metadata = {"doc": doc, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice_names(choices: tuple[str, ...] | Registry) -> list[str]:
    return choices.names() if isinstance(choices, Registry) else list(choices)


def field_error(field: dataclasses.Field, value: Any) -> str | None:
    """Why `value` is not allowed for `field`, or None when it is."""
    meta = field.metadata
    choices = meta.get("choices")
    if choices is not None:
        names = choice_names(choices)
        if value not in names:
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"{value!r} is not one of: {', '.join(names)}{hint}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        for key, symbol, ok in (
            ("ge", ">=", lambda b: value >= b),
            ("gt", ">", lambda b: value > b),
            ("le", "<=", lambda b: value <= b),
            ("lt", "<", lambda b: value < b),
        ):
            bound = meta.get(key)
            if bound is not None and not ok(bound):
                return f"must be {symbol} {bound}, got {value!r}"
    return None


class Settings:
    """Base of every config dataclass: checks each field on construction (and `check` methods).
    `section` names the run-config section the keys live in, for messages (`algo.clip_low ...`)."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate_settings(self)


def validate_settings(obj: Any) -> None:
    """Check every field of a config dataclass (again: it may have been changed since it was built).
    The ConfigError names the key with its section."""
    prefix = f"{obj.section}." if obj.section else ""
    for field in dataclasses.fields(obj):
        problem = field_error(field, getattr(obj, field.name))
        if problem:
            raise ConfigError(f"{prefix}{field.name} {problem}")
    for cls in reversed(type(obj).__mro__):
        check = cls.__dict__.get("check")
        if check is not None:
            try:
                check(obj)
            except ConfigError as err:
                raise ConfigError(f"{prefix}{err}") from None
