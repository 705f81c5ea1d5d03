"""CPU threads: the `spear` command makes torch's idle OpenMP threads spin briefly, then sleep (read
back from libgomp itself), `train.threads=0` counts physical cores within the CPU quota, and a run on a busy
machine says so in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from spear_rl.train import threads as threads_mod
from spear_rl.train.config import load_config
from spear_rl.train.runtime import set_threads
from spear_rl.train.threads import SHORT_SPIN, busy_warning, cpu_cores, spin_briefly


def libgomp_spincount() -> int:
    """The spin count torch's libgomp runs with, as it prints it at load (OMP_DISPLAY_ENV), in a
    fresh `spear train --print-config` process (which imports torch)."""
    # LD_PRELOAD: a vLLM engine started earlier in this process preloads libgomp for its children,
    # which then read the wait policy before Python runs (a user's LD_PRELOAD would do the same)
    drop = (*threads_mod.WAIT_VARS, "LD_PRELOAD")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    done = subprocess.run(
        [sys.executable, "-m", "spear_rl.cli", "train", "--print-config"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    if found is None:
        pytest.skip("this torch's OpenMP runtime is not libgomp (no GOMP_SPINCOUNT to read back)")
    return int(found.group(1))


def test_the_spear_command_makes_openmp_threads_spin_briefly():
    # without it libgomp spins 300000 times before sleeping
    assert libgomp_spincount() == SHORT_SPIN == 3000


def test_spin_briefly_only_before_torch_loads_and_only_without_a_users_policy(monkeypatch):
    for var in threads_mod.WAIT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert "torch" in sys.modules
    assert not spin_briefly() and "GOMP_SPINCOUNT" not in os.environ  # too late: torch loaded
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert not spin_briefly() and "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert spin_briefly() and os.environ["GOMP_SPINCOUNT"] == "3000"


def fake_sysfs(root, core_of_cpu: dict[int, int], cpu_max: str | None = None):
    for cpu, core in core_of_cpu.items():
        topology = root / f"devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    if cpu_max is not None:
        (root / "fs/cgroup").mkdir(parents=True)
        (root / "fs/cgroup/cpu.max").write_text(cpu_max + "\n")
    return root


def test_cpu_cores_counts_physical_cores_of_the_allowed_cpus_within_the_quota(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    # three cores with two hyper-threads each
    smt = fake_sysfs(tmp_path / "smt", {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2})
    assert cpu_cores(smt) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert cpu_cores(smt) == 2  # CPUs 0-2 lie on cores 0 and 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    one_each = {cpu: cpu for cpu in range(6)}
    quota = fake_sysfs(tmp_path / "quota", one_each, "150000 100000")
    assert cpu_cores(quota) == 2  # 6 cores, 1.5 CPUs' worth of time: 2 threads
    unlimited = fake_sysfs(tmp_path / "max", one_each, "max 100000")
    assert cpu_cores(unlimited) == 6
    assert cpu_cores(tmp_path / "no-topology") == 6  # nothing to read: the logical CPUs


def test_busy_warning_names_the_load_and_what_waiting_threads_do(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert busy_warning(2, 2) is None
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.5, 0.5))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    note = busy_warning(2, 2)
    assert note.startswith("note: the CPU is already busy (1-minute load 1.2 on 2 cores)")
    assert "\n" not in note and "threads soon sleep when idle" in note
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "3000")
    assert "threads soon sleep when idle (GOMP_SPINCOUNT=3000" in busy_warning(2, 2)
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    assert "set GOMP_SPINCOUNT=3000" in busy_warning(2, 2)
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert "set GOMP_SPINCOUNT=3000" in busy_warning(2, 2)
    assert "one torch thread" in busy_warning(1, 2)
    assert busy_warning(8, 32) is None  # 1.2 of 32 cores busy is not busy


@pytest.fixture
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_set_threads_sets_torch_and_warns_once_on_a_busy_cpu(
    tmp_path, monkeypatch, capsys, restore_threads
):
    # a vLLM engine started earlier in this process replaces torch.set_num_threads by a no-op
    monkeypatch.setattr(torch, "set_num_threads", torch._C.set_num_threads)
    cfg = load_config("sokoban/spear", {"train": {"device": "cpu", "threads": 0}})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    torch.set_num_threads(64)  # above the cores: 0 means the physical cores
    assert set_threads(cfg) == torch.get_num_threads() == cpu_cores()
    torch.set_num_threads(1)  # below them (OMP_NUM_THREADS=1, this suite): kept
    assert set_threads(cfg) == torch.get_num_threads() == 1
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cpu_cores()), 0.0, 0.0))
    cfg = load_config("sokoban/spear", {"train": {"device": "cpu", "threads": 3}})
    assert set_threads(cfg) == torch.get_num_threads() == 3
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and err.startswith("note: the CPU is already busy")
        and "3 torch threads" in err
    )
