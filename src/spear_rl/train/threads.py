"""CPU threads of a run: how many cores there are to use, how idle OpenMP threads wait, and a
warning when other work already keeps the cores busy. No torch import here: the wait policy only
counts if it is set before torch loads its OpenMP runtime (libgomp reads it once, at load).

Why a short spin: torch's CPU ops run in OpenMP teams, and by default (libgomp) a thread that
reaches the end of a parallel region spins 300000 times before sleeping. On a machine where another
process competes for the cores, the spinning thread takes the core the thread it waits for needs:
with one busy process beside it on 2 cores, generation ran 5-19x and the update 7x slower with two
threads than with one. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) fixes that but pays a wake-up per
region on an idle machine (a default-recipe step 1.2x slower). A short spin, then sleep, sits
between: on the SmolLM2 default (benchmarks/threads.py, docs/benchmarks.md), 1000 spins left a
step 1.56x slower beside one busy process but its warm start 1.23x slower on an idle machine than
the long spin (a thread sleeps in most gaps between ops and must be woken); 3000 spins kept a
step within 1.73x when loaded and took 5-10% off the idle phases; 10000 was 2.6x slower loaded.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

# set by the user, these decide how OpenMP waits; we leave them alone
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


SHORT_SPIN = 3000  # GOMP_SPINCOUNT: spins before an idle OpenMP thread sleeps


def spin_briefly() -> bool:
    """Make idle OpenMP threads spin briefly, then sleep, unless the user chose a policy. Call it
    before torch is imported (the CLI's start); too late afterwards, so then it does nothing.
    Returns whether the short spin is set because of this call."""
    if "torch" in sys.modules or any(v in os.environ for v in WAIT_VARS):
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SHORT_SPIN)
    return True


def openmp_spin_is_short() -> bool:
    """Whether the environment torch's OpenMP read keeps idle threads from spinning long:
    OMP_WAIT_POLICY=PASSIVE or GOMP_SPINCOUNT <= SHORT_SPIN (libgomp's own reading of them)."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().upper()
    spin = os.environ.get("GOMP_SPINCOUNT", "").strip()
    return policy == "PASSIVE" or (spin.isdigit() and int(spin) <= SHORT_SPIN)


def cpu_cores(sys_root: Path = Path("/sys")) -> int:
    """Cores this process can use: the physical cores among the CPUs it may run on (two
    hyper-threads of one core share its arithmetic units, so a second thread there mostly waits),
    capped by a cgroup v2 CPU quota (a container given 2 CPUs of a 64-core host)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = sys_root / f"devices/system/cpu/cpu{cpu}/topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:  # no topology to read: count logical CPUs
            cores = set(cpus)
            break
        cores.add((package, core))
    count = max(1, len(cores))
    quota = cgroup_cpu_quota(sys_root)
    return max(1, min(count, math.ceil(quota))) if quota else count


def cgroup_cpu_quota(sys_root: Path = Path("/sys")) -> float | None:
    """CPUs' worth of time the cgroup v2 `cpu.max` of this container allows, or None (no limit)."""
    try:
        quota, period = (sys_root / "fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def busy_warning(threads: int, cores: int) -> str | None:
    """One line when other work already keeps at least half the cores busy (the 1-minute load
    average, read before this run adds to it), else None."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return None
    if load < max(1.0, cores / 2):
        return None
    if threads == 1:
        how = "it uses one torch thread"
    elif openmp_spin_is_short():
        how = (
            f"its {threads} torch threads soon sleep when idle (GOMP_SPINCOUNT="
            f"{os.environ.get('GOMP_SPINCOUNT', 'unset')}, OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), so it slows down rather than stalls"
        )
    else:
        how = (
            f"its {threads} torch threads spin when idle and stall on busy cores: set "
            f"GOMP_SPINCOUNT={SHORT_SPIN} before Python starts, or train.threads=1"
        )
    return (
        f"note: the CPU is already busy (1-minute load {load:.1f} on {cores} cores): this run "
        f"shares it and will be slower; {how}"
    )
