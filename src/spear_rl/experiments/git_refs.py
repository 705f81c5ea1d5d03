"""Benchmarks that compare code at two commits run each from its own `src/`, exported by git."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path


def export_src(ref: str, into: Path, repo: Path) -> str:
    """`src/` of git ref `ref` of `repo` under `into` (run it with PYTHONPATH=into/src); returns the
    full commit hash."""
    sha = subprocess.check_output(["git", "rev-parse", ref], cwd=repo, text=True).strip()
    blob = subprocess.check_output(["git", "archive", sha, "src"], cwd=repo)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return sha
