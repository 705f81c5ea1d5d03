"""The one typed config of a run: recipe YAML -> dataclasses, CLI overrides, validation.

Each section is a dataclass owned by the module that uses it (`algo` embeds the algos modules'
AdvantageConfig, PolicyLossConfig, FilterConfig and RewardConfig; `replay` is algos.replay's
ReplayConfig; `rollout`, `model`, `sft`, `env` live beside their code); each field is declared once
with `fields.setting(default, doc, choices=..., ge=...)`, and is checked when the config is built,
so every entry point (`--print-config` included) rejects a bad value. `docs/config.md` is generated
from these declarations by `tools/gen_config_doc.py`.

A recipe is a YAML file of sections (model, env, rollout, algo, replay, sft, train, log). It may
name other recipes under `inherit:` (a path, or a list of paths merged in order, relative to
itself); the recipe's own sections are deep-merged over them.
Overrides come as `--section.key=value` (value parsed as YAML). Unknown or ill-typed keys fail with
a message that names the key and the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spear_rl.algos.advantages import AdvantageConfig
from spear_rl.algos.filters import FilterConfig
from spear_rl.algos.losses import PolicyLossConfig
from spear_rl.algos.replay import ReplayConfig
from spear_rl.algos.rewards import RewardConfig
from spear_rl.envs.config import EnvConfig
from spear_rl.fields import ConfigError, Settings, setting, validate_settings
from spear_rl.models.config import ModelConfig
from spear_rl.rollout.config import RolloutConfig
from spear_rl.train.parallel import PARALLEL_MODES
from spear_rl.train.precision import PRECISIONS
from spear_rl.train.sft import SFTConfig

__all__ = ["Config", "ConfigError", "config_from_dict", "load_config", "validate_config"]

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
DEFAULT_RECIPE = "math/smollm2-calculator"


@dataclass
class AlgoConfig(RewardConfig, FilterConfig, PolicyLossConfig, AdvantageConfig):
    """The `algo` section: the algos modules' own settings, embedded as they are (advantages, loss
    and aggregation, Dr.BoT filters, rewards); each key's default and check live in its module."""


@dataclass
class TrainConfig(Settings):
    """The optimisation loop: steps, batch sizes, optimiser, evaluation, checkpoints, device."""

    section = "train"

    steps: int = setting(20, "training steps (one rollout batch each)", ge=1)
    batch_tasks: int = setting(
        8, "task instances per step; each gets rollout.group_size episodes", ge=1
    )
    lr: float = setting(1e-4, "AdamW learning rate (0 = a frozen control)", ge=0)
    weight_decay: float = setting(0.0, "AdamW weight decay", ge=0)
    warmup_steps: int = setting(0, "linear LR warm-up, in optimiser steps", ge=0)
    grad_clip: float = setting(1.0, "max gradient norm; 0 = no clipping", ge=0)
    ppo_epochs: int = setting(1, "passes over each rollout batch", ge=1)
    mini_batch_size: int = setting(
        0,
        "at most this many samples per optimiser step; the batch splits into the fewest near-equal "
        "mini-batches (456 at 64: 8 of 57); 0 = the whole batch (one step)",
        ge=0,
    )
    micro_batch_size: int = setting(
        64, "samples per forward/backward (memory only; exact gradients)", ge=1
    )
    seed: int = setting(0, "everything random derives from (seed, step)", ge=0)
    eval_every: int = setting(10, "evaluate every this many steps; 0 = only before and after", ge=0)
    eval_episodes: int = setting(64, "held-out episodes per evaluation", ge=1)
    checkpoint_every: int = setting(
        10, "checkpoint every this many steps; 0 = only at the end", ge=0
    )
    output_dir: str = setting("runs", "run folders go here")
    run_name: str = setting("", "run folder name; empty = <env>-<preset>-seed<seed>-<time>")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    threads: int = setting(
        0,
        "torch CPU threads; 0 = one per physical core this process may use (split over a node's "
        "ranks under torchrun; a single process uses at most OMP_NUM_THREADS). The `spear` command "
        "also makes idle OpenMP threads spin briefly, then sleep (GOMP_SPINCOUNT=3000, unless it or "
        "OMP_WAIT_POLICY is set), so a busy machine slows a run down rather than stalling it "
        "(benchmarks/threads.py)",
        ge=0,
    )
    precision: str = setting(
        "float32",
        "arithmetic of the update's forward passes: float32; bfloat16 (autocast: weights, "
        "gradients and AdamW stay in the parameter dtype; pi_old is then recomputed in bf16 so the "
        "PPO ratio starts at 1); auto = bfloat16 where the device multiplies it natively (a CPU "
        "with AMX or AVX512-BF16, a CUDA GPU), else float32",
        choices=PRECISIONS,
    )
    parallel: str = setting(
        "ddp",
        "how several ranks (torchrun) share the policy: ddp, or fsdp (FSDP2 fully_shard, bf16 on "
        "CUDA); one process ignores it",
        choices=PARALLEL_MODES,
    )


@dataclass
class LogConfig(Settings):
    """What a run writes besides metrics.jsonl."""

    section = "log"

    preset: str = setting("", "a label for plots and tables (grpo, drbot, spear, ...)")
    tensorboard: bool = setting(False, "also log to RUN_DIR/tensorboard (spear-rl[tensorboard])")
    wandb: bool = setting(False, "also log to wandb (WANDB_MODE=offline works)")
    wandb_project: str = setting("spear-rl", "the wandb project")
    progress: bool = setting(True, "progress bar (a line per step when not a terminal)")
    sample_trajectories: int = setting(4, "rendered trajectories written at each evaluation", ge=0)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Checks that span sections (each section checks its own keys when built)."""
        if self.rollout.temperature <= 0:
            raise ConfigError(
                "rollout.temperature must be > 0 for training (it needs sampling log-probs); "
                "greedy decoding (0) is for evaluation"
            )
        if self.rollout.engine != "hf" and self.rollout.precision != "float32":
            raise ConfigError(
                f"rollout.precision applies to the hf engine; {self.rollout.engine} samples in "
                "model.dtype (set rollout.precision=float32)"
            )
        if self.algo.adv_estimator == "gigpo" and self.rollout.layout != "per_turn":
            raise ConfigError(
                "algo.adv_estimator=gigpo needs rollout.layout=per_turn (step groups are turns)"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---- loading ------------------------------------------------------------------------------------
def resolve_recipe_path(recipe: str | Path) -> Path:
    """A recipe file path, or a built-in name such as `sokoban/spear`."""
    path = Path(recipe)
    if path.is_file():
        return path
    builtin = RECIPES_DIR / f"{str(recipe).removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    known = ", ".join(list_recipes())
    raise ConfigError(f"recipe {str(recipe)!r} not found: give a YAML path or one of: {known}")


def list_recipes() -> list[str]:
    return sorted(
        str(p.relative_to(RECIPES_DIR)).removesuffix(".yaml")
        for p in RECIPES_DIR.rglob("*.yaml")
        if not any(part.startswith("_") for part in p.relative_to(RECIPES_DIR).parts)
    )


def read_recipe(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"recipe inheritance loops through {path}")
    data = read_yaml_mapping(path, "recipe")
    parents = data.pop("inherit", None) or []
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, read_recipe(path.parent / parent, (*_seen, path)))
    return deep_merge(merged, data)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file of sections (a recipe, a run's config.yaml); every way it can be unreadable is
    one ConfigError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8"
        ) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{what} {path} is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, key by key at every depth (env.kwargs included: `--env.kwargs.size=7`
    changes one kwarg). One exception: a layer that names a different env starts its kwargs afresh,
    since one env's kwargs mean nothing to another."""
    env_base, env_over = base.get("env"), over.get("env")
    if (
        isinstance(env_base, dict)
        and isinstance(env_over, dict)
        and env_over.get("name", env_base.get("name")) != env_base.get("name")
    ):
        base = {**base, "env": {k: v for k, v in env_base.items() if k != "kwargs"}}
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--algo.loss=clip_cov` / `--algo.loss clip_cov` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(
                f"bad override {arg!r}: use --section.key=value, e.g. --train.steps=10"
            )
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        elif i + 1 < len(args):
            key, raw = arg[2:], args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {arg!r} has no value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        i += 1
    return out


def load_config(
    recipe: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    data = read_recipe(resolve_recipe_path(recipe or DEFAULT_RECIPE))
    if overrides:
        data = deep_merge(data, overrides)
    return build_dataclass(Config, data, "")


def config_from_dict(data: dict[str, Any]) -> Config:
    return build_dataclass(Config, data, "")


def validate_config(cfg: Config) -> None:
    """Check a config again (code may have changed fields since it was built); ConfigError names
    the key."""
    for section in dataclasses.fields(cfg):
        validate_settings(getattr(cfg, section.name))
    cfg.check()


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            valid = ", ".join(fields)
            raise ConfigError(
                f"unknown config key {where!r}{hint} (valid in this section: {valid})"
            )
        kwargs[key] = coerce(value, hints[key], where)
    return cls(**kwargs)  # a section checks its own values (fields.Settings), naming the key


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check and convert a YAML value to the annotated type; fail naming the key."""
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, f"{where}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if hint is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {where!r} must be a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {where!r} must be a list, got {value!r}")
        return [coerce(v, args[0], where) for v in value] if args else list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {where!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"config key {where!r} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads off/no/false (on/yes/true) as a bool
            return "on" if value else "off"
        if isinstance(value, int | float):
            return str(value)
        raise ConfigError(f"config key {where!r} must be a string, got {value!r}")
    return value
