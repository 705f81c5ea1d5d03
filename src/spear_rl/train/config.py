"""The one typed config of a run: recipe YAML -> dataclasses, CLI overrides, validation.

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

from spear_rl.models.config import ModelConfig
from spear_rl.rollout.config import RolloutConfig
from spear_rl.train.sft import SFTConfig

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
DEFAULT_RECIPE = "sokoban/spear"


class ConfigError(ValueError):
    """A bad recipe or override; the message says which key and what to do."""


@dataclass
class EnvConfig:
    name: str = "sokoban"  # sokoban | alfworld | webshop | webshop_http | math_tool
    kwargs: dict[str, Any] = field(
        default_factory=dict
    )  # passed to the env class; --env.kwargs.K=V sets one (a new env.name starts them afresh)


@dataclass
class AlgoConfig:
    # advantages (spec §2)
    adv_estimator: str = "dr_grpo"  # grpo | dr_grpo | rloo | gigpo
    group_stats: str = "per_trajectory"  # per_trajectory | per_sample (reference)
    gigpo_gamma: float = 0.95  # discount of the step-level returns
    gigpo_step_weight: float = 1.0  # w_step in A = A_episode + w_step * A_step
    gigpo_episode_norm: str = "mean"  # std (grpo-style) | mean (dr_grpo-style)
    gigpo_step_norm: str = "mean"  # mean: G - mean; std: (G - mean) / (std + eps)
    # policy loss (spec §4) and aggregation (spec §5)
    loss: str = "clip_cov"  # vanilla | clip_cov | kl_cov | gpg
    clip_low: float = 0.2  # ratio clip below 1 - clip_low
    clip_high: float = 0.28  # clip-higher: ratio clip above 1 + clip_high
    dual_clip_c: float = 3.0  # dual clip for negative advantages: loss <= -c * A
    clip_cov_ratio: float = 2e-4  # share of tokens clip_cov detaches
    clip_cov_lb: float = 1.0  # clip_cov picks tokens with lb < cov < ub
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 2e-4  # share of top-cov tokens kl_cov penalises
    kl_cov_coef: float = 0.1  # beta of the kl_cov penalty
    # token-mean | seq-mean-token-sum | seq-mean-token-mean | seq-mean-token-sum-norm
    loss_agg: str = "seq-mean-token-sum-norm"
    loss_agg_t_norm: int = 0  # 0 = the max response length of the layout
    entropy_coef: float = 0.0  # entropy bonus c_H
    kl_coef: float = 0.0  # > 0 keeps a frozen reference model (low_var_kl)
    # Dr.BoT response filters and the group-std filter (spec §3)
    filter_overlong: bool = True  # drop responses that hit the token limit
    filter_incomplete: bool = True  # drop void turns (no parseable action / answer)
    filter_repetitive: bool = True  # drop responses with a 20-gram repeated >= 10 times
    filter_unreadable: bool = True  # drop responses with U+FFFD or mojibake
    # True: a filtered sample with a negative advantage still trains (filters withhold credit, not
    # blame), so the invalid-format penalty reaches void replies. Off in the spec.
    filter_keep_negative: bool = False
    group_filter_ratio: float = 0.75  # 1.0 keeps every group
    group_filter_mode: str = "std"  # std | std_rev
    # rewards (spec §1)
    invalid_penalty: float = 0.1  # subtracted per invalid turn
    toolcall_schedule: str = "cosine"  # none | constant | cosine
    toolcall_steps: int = 200  # T_tc: the cosine w(t) reaches 0 here
    toolcall_count_invalid: bool = False  # the reference counts every turn
    toolcall_bonus_mode: str = "linear"  # linear | flat_if_correct


@dataclass
class ReplaySection:
    enabled: bool = True  # the self-imitation replay buffer
    buffer_size: int = 2048  # capacity B (samples); oldest dropped beyond it
    tolerate_steps: int = 5  # W: samples older than this many steps are evicted
    admit_threshold: float = 0.0  # admit samples with on-policy advantage above this
    require_tool_call: bool = False  # math: admit only trajectories that called the tool
    baseline_history: int = 10240  # group mean/std entries kept for the P50 baseline
    recalibration: str = "p50"  # p50 | decay
    decay_lambda: float = 0.9  # A' = lambda * A_stored with recalibration=decay
    sampling: str = "uniform"  # uniform | priority
    trigger: str = "continuous"  # continuous | reference
    replay_batch: int = 0  # samples per optimiser step; 0 = replay_ratio x the on-policy mini-batch
    # replayed samples per on-policy sample of a mini-batch, when replay_batch is 0 (the spec: 1.0).
    # 0.125 costs about Dr.BoT's step; SPEAR's lead then shrinks, inside the noise (docs/benchmarks.md)
    replay_ratio: float = 1.0
    coef: float = 1.0  # kappa
    warmup_steps: int = 200  # T_rep of the cosine rise
    update: str = "joint"  # joint | separate (reference)
    # replay-specific clip-cov parameters (spec §4, the ALFWorld/WebShop recipe)
    clip_cov_ratio: float = 0.02
    clip_cov_lb: float = 2.0
    clip_cov_ub: float = 60.0


@dataclass
class TrainConfig:
    steps: int = 20  # training steps (one rollout batch each)
    batch_tasks: int = 8  # task instances per step; each gets rollout.group_size episodes
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear LR warm-up, in optimiser steps
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    ppo_epochs: int = 1  # passes over each rollout batch
    # at most this many samples per optimiser step; the batch splits into the fewest near-equal
    # mini-batches (456 at 64: 8 of 57, no small remainder); 0 = the whole batch (one step)
    mini_batch_size: int = 0
    micro_batch_size: int = 64  # samples per forward/backward (memory only; exact gradients)
    seed: int = 0  # everything random derives from (seed, step)
    eval_every: int = 10  # 0 = only before and after training
    eval_episodes: int = 64
    checkpoint_every: int = 10  # 0 = only at the end
    output_dir: str = "runs"  # run folders go here
    run_name: str = ""  # empty = <env>-<preset>-seed<seed>-<time>
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = all cores


@dataclass
class LogConfig:
    preset: str = ""  # a label for plots and tables (grpo, drbot, spear, ...)
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs the tensorboard extra)
    wandb: bool = False  # also log to wandb (WANDB_MODE=offline works)
    wandb_project: str = "spear-rl"
    progress: bool = True  # progress bar (a line per step when not a terminal)
    sample_trajectories: int = 4  # rendered trajectories written at each evaluation


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    replay: ReplaySection = field(default_factory=ReplaySection)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

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
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    parents = data.pop("inherit", None) or []
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, read_recipe(path.parent / parent, (*_seen, path)))
    return deep_merge(merged, data)


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
    return cls(**kwargs)


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
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {where!r} must be a string, got {value!r}")
    return value
