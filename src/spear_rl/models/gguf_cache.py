"""GGUF models converted once: the de-quantised model and its tokenizer, saved as a plain
transformers folder.

transformers converts a GGUF file on every load, and most of that is parsing the file's metadata
(the whole vocabulary, again for the config, the tokenizer and the weights): about 24 s for
SmolLM2-135M on 2 cores, against about 1 s to read the converted folder (safetensors; the weights
bit for bit). An entry is keyed by the file's contents (its SHA-256: a fraction of a second per
100 MB), the dtype it was de-quantised to and the transformers version that converted it; where
entries live: `model.cache_dir` (`spear_rl/cache_dirs.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from spear_rl.cache_dirs import cache_folder, write_entry

_DONE = "converted.json"  # written last: its presence marks a complete entry
GGUF_CACHE_VERSION = 1  # bump when what an entry holds changes


def gguf_cache_entry(cache_dir: str, file: str, dtype) -> Path | None:
    """The cache entry of GGUF `file` de-quantised to `dtype`, or None when the cache is off."""
    root = cache_folder(cache_dir, "models")
    if root is None:
        return None
    return root / gguf_cache_key(file, dtype)


def gguf_cache_key(file: str, dtype) -> str:
    import transformers

    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    settings = {
        "sha256": digest.hexdigest(),
        "dtype": str(dtype),
        "transformers": transformers.__version__,
        "version": GGUF_CACHE_VERSION,
    }
    name = os.path.splitext(os.path.basename(file))[0]
    blob = json.dumps(settings, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def is_converted(entry: Path) -> bool:
    return (entry / _DONE).is_file()


def save_converted(entry: Path, model, tokenizer, source: str) -> None:
    """Save a converted model and tokenizer as the entry, whole or not at all."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / _DONE).write_text(json.dumps({"source": os.path.abspath(source)}, indent=2))

    write_entry(entry, write, _DONE)
