"""Where spear-rl keeps what is slow to rebuild and exact to reload, and how an entry is written.

Two caches: the SFT warm start (`sft/`, `sft.cache_dir`) and GGUF models converted to
transformers' own format (`models/`, `model.cache_dir`). A setting of `auto` (the default) is
`$SPEAR_CACHE_DIR/<kind>`, else `~/.cache/spear-rl/<kind>` (`$XDG_CACHE_HOME` respected);
`SPEAR_CACHE_DIR=off` turns every `auto` cache off (the test suite sets it); `off` or empty turns
one off; anything else is the folder itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_folder(setting: str, kind: str) -> Path | None:
    """The folder a `cache_dir` setting names for this kind of entry, or None when it is off."""
    if setting in ("", "off"):
        return None
    if setting != "auto":
        return Path(setting)
    base = os.environ.get("SPEAR_CACHE_DIR", "")
    if base == "off":
        return None
    if base:
        return Path(base) / kind
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "spear-rl" / kind


def write_entry(entry: Path, write: Callable[[Path], None], done: str) -> None:
    """Have `write` fill a temporary folder, then rename it to `entry`: a crash never leaves a half
    entry that loads. `done` is the file `write` writes last; its presence marks a whole entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if entry.exists() and not (entry / done).is_file():
        shutil.rmtree(entry, ignore_errors=True)  # left by a crash before the rename was possible
    try:
        tmp.rename(entry)
    except OSError:  # another process finished the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
