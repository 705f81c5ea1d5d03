"""Fixtures shared across test folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The SFT warm start is cached in the user's cache folder by default (sft.cache_dir=auto); tests
# (and the processes they start) must each run their own SFT, so the suite turns that cache off.
os.environ["SPEAR_CACHE_DIR"] = "off"

EXAMPLE_PACKAGE = Path(__file__).parent / "custom_env_pkg"

# tests/rollout/spear_toy_env.py (the corridor env and its tiny policy) is imported by name from the
# rollout, model and train tests; its folder goes on the path here, once, for all of them
sys.path.insert(0, str(Path(__file__).parent / "rollout"))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Torch on one thread for the whole session (restored at its end): the suite runs on 2 shared
    cores, where a larger thread pool spins and makes every op many times slower, and runs that
    are compared number for number (resume, frozen control) must use the same thread count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def example_envs_site(tmp_path_factory) -> Path:
    """A folder where pip installed tests/custom_env_pkg (the envs of docs/custom-env.md) with
    its metadata, so its `spear_rl.envs` entry points are real: put it on sys.path to use it."""
    tmp = tmp_path_factory.mktemp("example_envs")
    source, site = tmp / "src", tmp / "site"
    shutil.copytree(
        EXAMPLE_PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"pip could not install {EXAMPLE_PACKAGE}:\n{done.stderr}"
    return site


@pytest.fixture
def fresh_example_modules(monkeypatch):
    """The example package (and test modules named user_envs*) is imported anew by each test, and
    sys.path / sys.modules are left as they were."""
    prefixes = ("spear_example_envs", "user_envs")
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m.startswith(prefixes)]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m.startswith(prefixes)]:
        del sys.modules[name]
