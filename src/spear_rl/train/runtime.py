"""Where and how a run executes: device, threads, seeds, this step's tasks, the env factory and
the env pool.

Everything random in a run derives from (train.seed, step, purpose), so a resumed run repeats an
uninterrupted one exactly.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from spear_rl.envs.base import EVAL_SEED_OFFSET, make_env
from spear_rl.envs.pool import EnvPool, EnvSpec, make_env_pool
from spear_rl.envs.resolve import EnvLoadError
from spear_rl.train.config import Config, ConfigError
from spear_rl.train.distributed import threads_per_rank
from spear_rl.train.threads import busy_warning, cpu_cores


def task_seeds(cfg: Config, step: int) -> list[int]:
    """This step's training task instances: a pure function of (seed, step), so resume is exact."""
    rng = np.random.default_rng([cfg.train.seed, step, 17])
    return rng.integers(0, EVAL_SEED_OFFSET, size=cfg.train.batch_tasks).tolist()


def derive_seed(seed: int, step: int, purpose: str) -> int:
    tag = sum(ord(c) * 31**i for i, c in enumerate(purpose)) % 2**31
    return int(np.random.SeedSequence([seed, step, tag]).generate_state(1)[0])


def make_env_factory(cfg: Config) -> EnvSpec:
    try:  # fail now, with the env's own message, on a bad name or kwargs
        make_env(cfg.env.name, **cfg.env.kwargs).close()
    except EnvLoadError:
        raise
    except (TypeError, ValueError) as err:  # the env constructor's own check of its kwargs
        raise ConfigError(f"env.kwargs of {cfg.env.name!r}: {err}") from None

    # picklable: env worker processes and Ray actors rebuild their envs from it
    return EnvSpec(cfg.env.name, dict(cfg.env.kwargs))


def open_env_pool(cfg: Config, env_factory: EnvSpec) -> EnvPool:
    """The run's env pool (`env.workers`): started once, it serves every rollout; close it."""
    return make_env_pool(
        cfg.env.workers,
        env_factory,
        timeout_s=cfg.rollout.env_timeout_s,
        num_workers=cfg.env.num_workers,
        cpus_per_worker=cfg.env.cpus_per_worker,
        ray_address=cfg.env.ray_address,
    )


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def warmup_lambda(warmup_steps: int):
    return lambda i: min(1.0, (i + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device={name!r} is not a device: auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device={name!r} but this torch ({torch.__version__}) sees no CUDA device: "
            "use train.device=auto or cpu, or install a CUDA build of torch"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"train.device={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return device


def set_threads(cfg: Config) -> int:
    """torch's CPU threads for this run, and a one-line note on stderr when a CPU run starts on an
    already busy machine. `train.threads=0`: this process's share of the physical cores, but never
    more than torch already uses (OMP_NUM_THREADS, or a caller's torch.set_num_threads)."""
    threads = cfg.train.threads or min(torch.get_num_threads(), threads_per_rank(0))
    torch.set_num_threads(threads)
    if pick_device(cfg.train.device).type == "cpu":
        warning = busy_warning(threads, cpu_cores())
        if warning:
            print(warning, file=sys.stderr)
    return threads
