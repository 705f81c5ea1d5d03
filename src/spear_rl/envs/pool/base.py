"""The env pool protocol: what the rollout asks of a batch of live episodes, and the inline pool.

A pool holds one env per episode ("slot") of the current rollout. `reset(seeds)` starts a fresh
episode per seed, `step(slots, responses)` steps some of them, `release()` closes them all at the
end of the rollout, `close()` shuts the pool's workers down. Every call returns one `EnvCallResult`
per slot: the env's `StepResult` and an `EnvView` (what the rollout reads between calls), or the
reason the call failed. A failed call ends that episode and nothing else; the pool counts it.

Envs stay plain single-episode objects (`Env`); only the pool knows where they run. The inline pool
is the oracle the worker backends are tested against.
"""

from __future__ import annotations

import contextlib
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spear_rl.envs.base import Env, EnvTimeoutError, StepResult, call_with_timeout, make_env
from spear_rl.registry import Registry


@dataclass(frozen=True)
class EnvSpec:
    """A picklable env factory: a registered env family and its constructor arguments.

    Worker processes and Ray actors rebuild envs from it, so an env never crosses a process."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Env:
        return make_env(self.name, **self.kwargs)


@dataclass
class EnvView:
    """What the rollout reads of an env between calls (a copy: the env may live in a worker).

    It has the attributes of `Env` that prompt rendering and the runner use, so it stands in for
    the env in `EpisodeRenderer`. The runner updates it in place after every call."""

    task: str = ""
    observation: str = ""
    anchor: str = ""
    won: bool = False
    done: bool = False
    admissible_actions: list[str] | None = None
    system_prompt: str = ""
    observation_role: str = "user"
    # an env with tools: its prompt_setup(False) and prompt_setup(True) (system prompt, schemas)
    tool_setups: tuple[tuple[str, Any], tuple[str, Any]] | None = None

    @classmethod
    def of(cls, env: Env) -> EnvView:
        admissible = env.admissible_actions
        tool_setups = None
        own_setup = getattr(type(env), "prompt_setup", None)
        if own_setup is not None and own_setup is not getattr(Env, "prompt_setup", None):
            tool_setups = (env.prompt_setup(False), env.prompt_setup(True))
        return cls(
            task=env.task,
            observation=env.observation,
            anchor=env.anchor,
            won=bool(env.won),
            done=bool(env.done),
            admissible_actions=None if admissible is None else list(admissible),
            system_prompt=env.system_prompt,
            observation_role=env.observation_role,
            tool_setups=tool_setups,
        )

    def prompt_setup(self, template_renders_tools: bool) -> tuple[str, list[dict] | None]:
        """As `Env.prompt_setup`: what the env gave for this kind of chat template."""
        if self.tool_setups is None:
            return self.system_prompt, None
        return self.tool_setups[int(bool(template_renders_tools))]

    def update(self, other: EnvView) -> None:
        self.__dict__.update(other.__dict__)


@dataclass
class EnvCallResult:
    """The outcome of one reset/step call: `view` (and `result` for a step), or `failure`."""

    view: EnvView | None = None
    result: StepResult | None = None
    # why the call failed: "env_timeout", "env_error: Type: message", "env_worker_died: ..."
    failure: str | None = None
    error: BaseException | None = None  # the env's own exception, where it could be carried

    @property
    def ok(self) -> bool:
        return self.failure is None


def failure_reason(err: BaseException) -> str:
    """The trajectory's `end_reason` for an env call that raised (one line, bounded)."""
    if isinstance(err, EnvTimeoutError):
        return "env_timeout"
    message = " ".join(str(err).split())[:200]
    return f"env_error: {type(err).__name__}: {message}"


def failed_call(err: BaseException) -> EnvCallResult:
    return EnvCallResult(failure=failure_reason(err), error=portable_error(err))


def portable_error(err: BaseException) -> BaseException | None:
    """`err` when it survives pickling (to re-raise a setup error in the trainer), else None."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return None
    return err


class EnvPool(ABC):
    """A batch of live episodes, stepped together between generation rounds."""

    #: backend name ("inline", "process", "ray")
    backend: str = ""

    def __init__(self) -> None:
        # failed env calls (raised, hung past the timeout, worker died) and workers started anew
        self.counters = {"worker_failures": 0, "workers_replaced": 0}

    @abstractmethod
    def reset(self, seeds: Sequence[int]) -> list[EnvCallResult]:
        """Close the previous episodes and start one per seed (slot i plays seeds[i])."""

    @abstractmethod
    def step(self, slots: Sequence[int], responses: Sequence[str]) -> list[EnvCallResult]:
        """Apply one raw model response to each listed slot, concurrently where the backend can."""

    @abstractmethod
    def release(self) -> None:
        """Close every episode's env (end of a rollout); the workers stay up for the next one."""

    def close(self) -> None:  # noqa: B027 - the inline pool has nothing more to stop
        """Release the episodes and stop the workers; leaves no process behind."""

    def take_counters(self) -> dict[str, int]:
        """The counters since the last call, reset to zero (one rollout's worth)."""
        taken = dict(self.counters)
        self.counters = dict.fromkeys(self.counters, 0)
        return taken

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlinePool(EnvPool):
    """Today's behaviour: every env in this process, called one after another.

    `timeout_s > 0` runs each call in a helper thread with that limit (`call_with_timeout`): a hung
    call ends its episode, but its thread cannot be stopped. The worker backends kill a hung worker.
    """

    backend = "inline"

    def __init__(self, factory: Callable[[], Env], timeout_s: float = 0.0) -> None:
        super().__init__()
        self.factory = factory
        self.timeout_s = timeout_s
        self.envs: list[Env | None] = []

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.timeout_s and self.timeout_s > 0:
            return call_with_timeout(fn, *args, timeout_s=self.timeout_s)
        return fn(*args)

    def reset(self, seeds: Sequence[int]) -> list[EnvCallResult]:
        self.release()
        results = []
        for seed in seeds:
            try:
                env = self.factory()
            except Exception as err:  # a broken factory fails every episode, as a reset would
                self.envs.append(None)
                results.append(self._failed(err))
                continue
            self.envs.append(env)
            try:
                self._call(env.reset, int(seed))
            except Exception as err:
                results.append(self._failed(err))
                continue
            results.append(EnvCallResult(view=EnvView.of(env)))
        return results

    def step(self, slots: Sequence[int], responses: Sequence[str]) -> list[EnvCallResult]:
        results = []
        for slot, response in zip(slots, responses, strict=True):
            env = self.envs[slot]
            if env is None:
                raise RuntimeError(f"slot {slot} has no env (its reset failed)")
            try:
                result = self._call(env.step, response)
            except Exception as err:
                results.append(self._failed(err))
                continue
            results.append(EnvCallResult(view=EnvView.of(env), result=result))
        return results

    def _failed(self, err: BaseException) -> EnvCallResult:
        self.counters["worker_failures"] += 1
        return EnvCallResult(failure=failure_reason(err), error=err)

    def release(self) -> None:
        for env in self.envs:
            if env is not None:
                with contextlib.suppress(Exception):  # best effort: a broken env must not stop us
                    env.close()
        self.envs = []

    def close(self) -> None:
        self.release()


ENV_POOLS: Registry[Callable[..., EnvPool]] = Registry("env worker backend")
