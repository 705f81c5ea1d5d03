"""spear-rl's GRPO step against TRL's `GRPOTrainer` on the same work, timed in interleaved pairs.

Both sides get the same tiny model weights and tokenizer (built once per prompt layout, saved to a
folder, loaded from there by each side), the same single-turn task ("add two small numbers, answer
in <action>N</action>", reward 1 if right, else 0), the same prompts token for token, in the same
order, and the same batch (prompts per step), group size, max completion length, temperature 1.0,
learning rate (constant), one AdamW step per batch, grad-norm clip 1.0, KL coefficient 0, PPO clip
0.2, token-mean loss aggregation (TRL's `loss_type="dapo"`), torch thread count and gradient
checkpointing setting (off by default; `--gradient-checkpointing` turns it on for both).

Fair timing on a shared machine: every measurement is a fresh process that trains `--steps` steps
from the shared weights (so every measurement does the same work and neither side inherits the
other's warm caches, thread pool or memory; imports and model loading are not timed), and it is
scored by the median of its steps after the first. The two sides run in pairs, one right after
the other, the side that goes first alternating pair by pair (see
`spear_rl.experiments.interleaved`), and the layouts alternate inside each pair round, so load
drift hits both sides alike. Each pair gives one ratio TRL / spear-rl; the table shows the median
ratio and its min-max range over `--pairs` pairs, per prompt layout:
- `inline`: no system prompt, the numbers come first: no prefix shared across the batch. The
  only sharing left is GRPO's own: a group's completions continue one prompt.
- `system`: the instruction is a system prompt every prompt starts with (the usual agent layout).

What cannot be made equal, by design of the two libraries, is listed in `docs/benchmarks.md`.
TRL is an optional benchmark dependency, not a spear-rl one:

    pip install --no-deps trl==1.16.0   # --no-deps keeps the installed torch

Run (about 5 minutes on an idle 2-core CPU with the defaults; --threads above the number of idle
cores makes torch's thread pool spin and everything 10-30x slower, on both sides):

    python benchmarks/vs_trl.py

Writes benchmarks/results/vs_trl.json (summary, every pair and step) and vs_trl.png, and prints a
table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from spear_rl.experiments.interleaved import format_spread, pair_orders, pair_ratios, spread

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENV_NAME = "bench_sum"
INSTRUCTION = "You add numbers. Reply with only the sum, as <action>N</action>."
PROMPT_LAYOUTS = ("inline", "system")
SIDES = ("trl", "spear")
TRL_VERSION = "1.16.0"
TRL_MISSING = (
    f"TRL is not installed. It is an optional benchmark dependency: "
    f"pip install --no-deps trl=={TRL_VERSION}  (--no-deps keeps your torch build)"
)


# ---- the task, shared by both sides ----------------------------------------------------------------
def _register_task() -> None:
    """Register the single-turn sum env under ENV_NAME (spear-rl's env registry)."""
    from spear_rl.envs.base import ENVS, Env, StepResult, register_env

    if ENV_NAME in ENVS:
        return

    @register_env(ENV_NAME)
    class SumEnv(Env):
        """One turn: the observation is "a + b", the answer is their sum in <action>...</action>."""

        name = ENV_NAME

        def __init__(
            self,
            max_operand: int = 2,
            prompt_layout: str = "system",
            format_only_expert: bool = False,
        ) -> None:
            super().__init__()
            if prompt_layout not in PROMPT_LAYOUTS:
                raise ValueError(
                    f"prompt_layout must be one of {PROMPT_LAYOUTS}, got {prompt_layout!r}"
                )
            self.max_operand = max_operand
            self.prompt_layout = prompt_layout
            self.system_prompt = INSTRUCTION if prompt_layout == "system" else ""
            # The warm-start demonstrator knows the answer format but not arithmetic.
            self.format_only_expert = format_only_expert
            self.answer = 0
            self._expert_rng = random.Random(0)

        def _reset(self, seed: int) -> str:
            self.answer = task_answer(seed, self.max_operand)
            self._expert_rng = random.Random(seed + 1)
            observation = task_observation(seed, self.max_operand)
            # inline: the prompt starts with this task's numbers, so prompts share no long prefix
            self.task = (
                "Add the two numbers."
                if self.prompt_layout == "system"
                else (f"{observation}. {INSTRUCTION}")
            )
            return observation

        def _step_action(self, action: str) -> StepResult:
            self.won = action == str(self.answer)
            return StepResult(self.observation, float(self.won), True, {"valid": True})

        def expert_action(self) -> str | None:
            if self.done:
                return None
            if self.format_only_expert:
                return str(self._expert_rng.randint(0, 2 * self.max_operand))
            return str(self.answer)

        def format_action(self, action: str, thought: str = "") -> str:
            return f"<action>{action}</action>"


def task_operands(seed: int, max_operand: int) -> tuple[int, int]:
    rng = random.Random(seed)
    return rng.randint(0, max_operand), rng.randint(0, max_operand)


def task_answer(seed: int, max_operand: int) -> int:
    return sum(task_operands(seed, max_operand))


def task_observation(seed: int, max_operand: int) -> str:
    a, b = task_operands(seed, max_operand)
    return f"{a} + {b}"


def completion_reward(text: str, answer: int) -> float:
    """The env's reward computed from raw completion text (what the TRL reward function uses)."""
    from spear_rl.envs.parsing import parse_tagged_action

    return 1.0 if parse_tagged_action(text) == str(answer) else 0.0


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_operand": args.max_operand, "prompt_layout": args.prompt_layout}


def task_messages(seed: int, args: argparse.Namespace) -> list[dict[str, str]]:
    """The chat spear-rl's per_turn rollout renders for this task ([system +] user message)."""
    from spear_rl.envs.base import make_env
    from spear_rl.rollout.prompts import render_user_message

    env = make_env(ENV_NAME, **env_kwargs(args))
    env.reset(seed)
    messages = [{"role": "system", "content": env.system_prompt}] if env.system_prompt else []
    user = render_user_message(env.task, [], env.observation, None)
    return [*messages, {"role": "user", "content": user}]


def step_task_seeds(args: argparse.Namespace) -> list[list[int]]:
    """Task seeds of every step exactly as spear-rl's trainer draws them (TRL gets the same)."""
    from spear_rl.train.runtime import task_seeds

    cfg = spear_config(args, model_dir="unused", output_dir="unused")
    return [task_seeds(cfg, step) for step in range(1, args.steps + 1)]


# ---- the shared starting point -----------------------------------------------------------------------
def build_shared_model(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """Tiny model + tokenizer from seed 0, a short format-only warm start, saved to model_dir."""
    import torch

    from spear_rl.envs.base import make_env
    from spear_rl.models import ModelConfig, load_policy
    from spear_rl.rollout.config import RolloutConfig
    from spear_rl.train.sft import SFTConfig, run_sft, sft_corpus_texts

    torch.set_num_threads(args.threads)

    def factory(format_only: bool = False):
        return make_env(ENV_NAME, **env_kwargs(args), format_only_expert=format_only)

    model_cfg = ModelConfig(
        name_or_path="tiny", tiny_layers=args.layers, tiny_hidden=args.hidden, tiny_heads=args.heads
    )
    model, tokenizer = load_policy(
        model_cfg, corpus=lambda: sft_corpus_texts(factory, range(256)), seed=0
    )
    sft_stats: dict[str, Any] = {}
    if args.warm_start_episodes > 0:
        # Train seeds at and above 10**6 are never drawn by the RL steps of either side.
        sft_seeds = range(10**6 + 1, 10**6 + 1 + args.warm_start_episodes)
        sft_stats = run_sft(
            model,
            tokenizer,
            lambda: factory(format_only=True),
            sft_seeds,
            RolloutConfig(max_turns=1),
            SFTConfig(episodes=args.warm_start_episodes, epochs=2, lr=3e-3, batch_size=32),
            seed=0,
        )
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    return {
        "parameters": params,
        "vocab": len(tokenizer),
        "warm_start": {k: v for k, v in sft_stats.items() if isinstance(v, int | float)},
    }


def check_same_prompts(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """Assert TRL's prompt rendering (HF apply_chat_template) gives spear-rl's prompt ids; also
    measure the prompt lengths and the prefix each step's prompts share."""
    from transformers import AutoTokenizer

    from spear_rl.envs.base import make_env
    from spear_rl.rollout.prompts import build_turn_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    lengths, shared = [], []
    for seeds in step_task_seeds(args):
        step_prompts = []
        for seed in seeds:
            env = make_env(ENV_NAME, **env_kwargs(args))
            env.reset(seed)
            ours = build_turn_prompt(
                tokenizer, env.system_prompt, env.task, [], env.observation, None
            )
            theirs = tokenizer.apply_chat_template(
                task_messages(seed, args),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            if list(theirs) != list(ours):
                raise SystemExit(f"prompt ids differ for task seed {seed}: {theirs} vs {ours}")
            step_prompts.append(ours)
            lengths.append(len(ours))
        shared.append(common_prefix_length(step_prompts))
    return {
        "checked_identical": len(lengths),
        "prompt_tokens_mean": statistics.fmean(lengths),
        "shared_prefix_tokens_per_step_min": min(shared),
        "shared_prefix_tokens_per_step_max": max(shared),
    }


def common_prefix_length(sequences: list[list[int]]) -> int:
    length = 0
    for column in zip(*sequences, strict=False):
        if any(token != column[0] for token in column):
            break
        length += 1
    return length


# ---- spear-rl side -----------------------------------------------------------------------------------
def spear_config(args: argparse.Namespace, model_dir: str, output_dir: str):
    from spear_rl.train.config import RECIPES_DIR, config_from_dict, deep_merge, read_recipe

    preset = read_recipe(RECIPES_DIR / "_presets" / "grpo.yaml")
    completions = args.prompts * args.group_size
    run = {
        "model": {
            "name_or_path": model_dir,
            "gradient_checkpointing": args.gradient_checkpointing,
        },
        "env": {"name": ENV_NAME, "kwargs": env_kwargs(args)},
        "rollout": {
            "group_size": args.group_size,
            "max_turns": 1,
            "max_response_tokens": args.max_completion_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "generation_batch_size": completions,  # TRL generates the whole batch in one call
        },
        "algo": {
            "kl_coef": 0.0,  # beta = 0 on both sides
            "invalid_penalty": 0.0,  # TRL's reward has no format penalty
        },
        "sft": {"episodes": 0},  # both start from the same saved weights
        "train": {
            "steps": args.steps,
            "batch_tasks": args.prompts,
            "lr": args.lr,
            "warmup_steps": 0,
            "grad_clip": 1.0,
            "ppo_epochs": 1,
            "mini_batch_size": 0,  # the whole batch: one optimiser step
            "micro_batch_size": completions,  # TRL: one forward/backward over the whole batch
            "seed": args.seed,
            "eval_every": 0,
            "eval_episodes": 1,  # the trainer always evaluates at the end; its time is subtracted
            "checkpoint_every": 0,
            "output_dir": output_dir,
            "run_name": "spear",
            "device": args.device,
            "threads": args.threads,
        },
        "log": {"progress": False, "sample_trajectories": 0},
    }
    return config_from_dict(deep_merge(preset, run))


def run_spear_side(args: argparse.Namespace, model_dir: Path, work_dir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from spear_rl.train.metrics import read_metrics
    from spear_rl.train.trainer import train

    cfg = spear_config(args, str(model_dir), str(work_dir / "spear_runs"))
    if args.no_prefix_sharing:  # the ablation: every row's prompt computed, as TRL does
        import spear_rl.models.forward as forward

        forward.MIN_SHARED_PREFIX = 10**9
    load_before = os.getloadavg()
    result = train(cfg, echo=lambda *_: None)
    records = [r for r in read_metrics(result.run_dir) if r["step"] >= 1]
    return {
        # the trainer evaluates after the last step; that is no part of a training step
        "step_seconds": [
            float(r["time/step"]) - float(r.get("eval/seconds", 0.0)) for r in records
        ],
        "generate_seconds": [float(r["time/generate"]) for r in records],
        "update_seconds": [float(r["time/update"]) for r in records],
        "reward": [float(r["reward/mean"]) for r in records],
        "completion_tokens_mean": [float(r["rollout/response_len_mean"]) for r in records],
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
    }


# ---- TRL side ----------------------------------------------------------------------------------------
def run_trl_side(args: argparse.Namespace, model_dir: Path, work_dir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise SystemExit(TRL_MISSING) from None
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5.x renames

    seeds = [seed for step in step_task_seeds(args) for seed in step]
    dataset = Dataset.from_list(
        [
            {
                "prompt": task_messages(s, args),
                "answer": task_answer(s, args.max_operand),
            }
            for s in seeds
        ]
    )

    def sum_reward(completions, answer, **_: Any) -> list[float]:
        return [
            completion_reward(c[0]["content"], a) for c, a in zip(completions, answer, strict=True)
        ]

    class StepTimer(TrainerCallback):
        """Wall time of each optimiser step: generation, reward, loss, backward and AdamW."""

        def __init__(self) -> None:
            self.core: list[float] = []
            self.logs: list[dict[str, float]] = []
            self._begin = 0.0

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self._begin = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.core.append(time.perf_counter() - self._begin)

        def on_log(self, _args, _state, _control, logs=None, **__: Any) -> None:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    completions = args.prompts * args.group_size
    config = GRPOConfig(
        output_dir=str(work_dir / "trl_out"),
        per_device_train_batch_size=completions,  # TRL counts completions, not prompts
        gradient_accumulation_steps=1,
        num_generations=args.group_size,
        max_completion_length=args.max_completion_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        epsilon=0.2,
        num_iterations=1,
        loss_type="dapo",  # token-mean over the whole batch = spear-rl's loss_agg token-mean
        scale_rewards="group",  # (r - group mean) / group std = spear-rl's adv_estimator grpo
        max_steps=args.steps,
        shuffle_dataset=False,  # the same prompts in the same order as spear-rl
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
        use_cpu=args.device == "cpu",
        bf16=False,  # TRL defaults to bf16; spear-rl trains in fp32 (faster on CPU)
        fp16=False,
        gradient_checkpointing=args.gradient_checkpointing,  # TRL's default is on
        dataloader_num_workers=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    )
    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=sum_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # our own table replaces its per-step prints
    phases = {
        "generate": timed(trainer, "_generate"),
        "rollout": timed(trainer, "_generate_and_score_completions"),
    }
    checkpointing = bool(trainer.model.is_gradient_checkpointing)
    if checkpointing != args.gradient_checkpointing:
        raise SystemExit(f"TRL's gradient checkpointing is {checkpointing}, not as asked")
    load_before = os.getloadavg()
    trainer.train()
    # TRL's update = the step minus generating and scoring (its forward/backward and AdamW)
    update = [c - r for c, r in zip(timer.core, phases["rollout"], strict=True)]
    return {
        "step_seconds": timer.core,
        "generate_seconds": phases["generate"],
        "update_seconds": update,
        "reward": [float(x["reward"]) for x in timer.logs],
        "completion_tokens_mean": [float(x["completions/mean_length"]) for x in timer.logs],
        "gradient_checkpointing": checkpointing,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
    }


def timed(obj: Any, method: str) -> list[float]:
    """Wrap obj.method so each call's wall time is appended to the returned list."""
    seconds: list[float] = []
    original = getattr(obj, method)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(obj, method, wrapper)
    return seconds


# ---- one measurement: a fresh process trains `--steps` steps on one side -------------------------------
def measure(side: str, args: argparse.Namespace, model_dir: Path, work_dir: Path) -> dict:
    """Run one side in a fresh process; its per-step times and the median after the warm-up."""
    out = work_dir / f"{side}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--model-dir",
        str(model_dir),
        "--work-dir",
        str(work_dir),
        *forwarded_flags(args),
    ]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:  # its warnings are noise; on failure, its last words
        raise SystemExit(f"the {side} side failed:\n{child.stderr[-3000:]}")
    data = json.loads(out.read_text())
    if not len(data["step_seconds"]) == len(data["reward"]) == args.steps:
        raise SystemExit(f"{side} recorded {len(data['step_seconds'])} steps, not {args.steps}")
    timed = slice(args.skip_first, None)
    data["median_step_seconds"] = statistics.median(data["step_seconds"][timed])
    for phase in ("generate", "update"):
        data[f"median_{phase}_seconds"] = statistics.median(data[f"{phase}_seconds"][timed])
    return data


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for name in SHARED_FLAGS:
        value = getattr(args, name)
        if isinstance(value, bool):
            flags += [f"--{name.replace('_', '-')}"] if value else []
        else:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def layout_summary(pairs: list[dict]) -> dict[str, Any]:
    """Median and min-max over the pairs: the ratio, each side's s/step and its phases."""
    ratios = pair_ratios(
        [p["trl"]["median_step_seconds"] for p in pairs],
        [p["spear"]["median_step_seconds"] for p in pairs],
    )
    summary: dict[str, Any] = {"ratio_trl_over_spear": spread(ratios)}
    for side in SIDES:
        summary[side] = {
            key: spread([p[side][f"median_{key}"] for p in pairs])
            for key in ("step_seconds", "generate_seconds", "update_seconds")
        }
        summary[side]["completion_tokens_mean"] = statistics.fmean(
            t for p in pairs for t in p[side]["completion_tokens_mean"]
        )
    return summary


def print_table(summaries: dict[str, dict], pairs: int) -> None:
    print(
        f"\nmedian over {pairs} interleaved pairs (min-max); each pair: median s/step of steps "
        "after the first"
    )
    head = (
        f"{'layout':<8} {'TRL / spear-rl':<20} {'TRL s/step':<22} {'spear-rl s/step':<22} "
        f"{'TRL gen | update':<18} {'spear gen | update':<18}"
    )
    print(head)
    for layout, s in summaries.items():
        phases = {
            side: f"{s[side]['generate_seconds']['median']:.3f} | "
            f"{s[side]['update_seconds']['median']:.3f}"
            for side in SIDES
        }
        print(
            f"{layout:<8} {format_spread(s['ratio_trl_over_spear'], unit='x'):<20} "
            f"{format_spread(s['trl']['step_seconds'], 3):<22} "
            f"{format_spread(s['spear']['step_seconds'], 3):<22} "
            f"{phases['trl']:<18} {phases['spear']:<18}"
        )


def plot(results: dict[str, list[dict]], summaries: dict[str, dict], path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = {"trl": "TRL GRPOTrainer", "spear": "spear-rl GRPO"}
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (layout, pairs) in zip(axes[0], results.items(), strict=True):
        x = range(1, len(pairs) + 1)
        for side in SIDES:
            ax.plot(x, [p[side]["median_step_seconds"] for p in pairs], "o-", label=labels[side])
        ratio = format_spread(summaries[layout]["ratio_trl_over_spear"], unit="x")
        ax.set(xlabel="pair", ylabel="s / step (median of the run)", title=f"{layout}: {ratio}")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SHARED_FLAGS = (
    "steps",
    "prompts",
    "group_size",
    "max_completion_tokens",
    "lr",
    "seed",
    "threads",
    "device",
    "max_operand",
    "prompt_layout",
    "layers",
    "hidden",
    "heads",
    "gradient_checkpointing",
    "no_prefix_sharing",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=7, help="interleaved TRL/spear-rl pairs per layout")
    p.add_argument("--layouts", default="inline,system", help="prompt layouts, comma-separated")
    p.add_argument("--steps", type=int, default=5, help="optimiser steps in each measurement")
    p.add_argument(
        "--skip-first", type=int, default=1, help="warm-up steps of a measurement left untimed"
    )
    p.add_argument("--prompts", type=int, default=8, help="prompts (task instances) per step")
    p.add_argument("--group-size", type=int, default=8, help="completions per prompt (GRPO group)")
    p.add_argument("--max-completion-tokens", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads on both sides (more than the free cores thrashes badly)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--max-operand", type=int, default=2, help="operands are drawn from 0..N")
    p.add_argument("--layers", type=int, default=2, help="tiny model layers")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument(
        "--gradient-checkpointing", action="store_true", help="on for both sides (default: off)"
    )
    p.add_argument(
        "--no-prefix-sharing",
        action="store_true",
        help="spear-rl computes every row's prompt (no shared prefix, no group prompt computed "
        "once): the same arithmetic as TRL, to see what the sharing is worth",
    )
    p.add_argument(
        "--warm-start-episodes",
        type=int,
        default=2048,
        help="format-only SFT pairs before saving the shared weights (0 = none)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "vs_trl.json", help="PNG beside it")
    # internal: a child process runs one side of one measurement
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--prompt-layout", choices=PROMPT_LAYOUTS, help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.layout_list = [s.strip() for s in args.layouts.split(",")]
    if not args.layout_list or not set(args.layout_list) <= set(PROMPT_LAYOUTS):
        p.error(f"--layouts takes some of {', '.join(PROMPT_LAYOUTS)}")
    if args.steps <= args.skip_first:
        p.error("--steps must exceed --skip-first")
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _register_task()
    if args.side is not None:  # child process: one side, results to work_dir/<side>.json
        runner = run_trl_side if args.side == "trl" else run_spear_side
        data = runner(args, args.model_dir, args.work_dir)
        (args.work_dir / f"{args.side}.json").write_text(json.dumps(data))
        return

    try:
        import trl
    except ImportError:
        raise SystemExit(TRL_MISSING) from None
    import torch
    import transformers

    started, load_start = time.perf_counter(), os.getloadavg()
    layouts = {
        name: argparse.Namespace(**{**vars(args), "prompt_layout": name})
        for name in args.layout_list
    }
    models, prompts = {}, {}
    results: dict[str, list[dict]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory(prefix="spear_vs_trl_") as tmp:
        for name, layout_args in layouts.items():
            model_dir = Path(tmp) / name / "shared_model"
            print(f"{name}: building the shared tiny model ...", flush=True)
            models[name] = build_shared_model(layout_args, model_dir)
            prompts[name] = check_same_prompts(layout_args, model_dir)
            print(
                f"{name}: {models[name]['parameters']:,} parameters, vocab {models[name]['vocab']}"
                f"; {prompts[name]['checked_identical']} prompts render to identical ids on both "
                f"sides ({prompts[name]['prompt_tokens_mean']:.0f} tokens on average, the first "
                f"{prompts[name]['shared_prefix_tokens_per_step_min']} shared by all prompts of "
                "a step)",
                flush=True,
            )
        for pair in range(args.pairs):
            for offset, (name, layout_args) in enumerate(layouts.items()):
                order = pair_orders(args.pairs, SIDES, offset)[pair]
                record: dict[str, Any] = {"pair": pair + 1, "order": list(order)}
                for side in order:
                    work_dir = Path(tmp) / name / f"pair{pair + 1}"
                    work_dir.mkdir(exist_ok=True)
                    record[side] = measure(
                        side, layout_args, Path(tmp) / name / "shared_model", work_dir
                    )
                if (
                    record["trl"]["gradient_checkpointing"]
                    != record["spear"]["gradient_checkpointing"]
                ):
                    raise SystemExit("the two sides ran with different gradient checkpointing")
                record["ratio_trl_over_spear"] = (
                    record["trl"]["median_step_seconds"] / record["spear"]["median_step_seconds"]
                )
                results[name].append(record)
                print(
                    f"pair {pair + 1}/{args.pairs} {name:<6} ({order[0]} first): TRL "
                    f"{record['trl']['median_step_seconds']:.3f} s/step, spear-rl "
                    f"{record['spear']['median_step_seconds']:.3f}: "
                    f"{record['ratio_trl_over_spear']:.2f}x  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    summaries = {name: layout_summary(pairs) for name, pairs in results.items()}
    print_table(summaries, args.pairs)
    settings = {
        name: getattr(args, name)
        for name in (*SHARED_FLAGS, "pairs", "layouts", "skip_first", "warm_start_episodes")
        if name != "prompt_layout"
    }
    record = {
        "benchmark": "spear-rl GRPO vs TRL GRPOTrainer, same work, interleaved pairs",
        "command": "python benchmarks/vs_trl.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings,
        "completions_per_step": args.prompts * args.group_size,
        "model": models,
        "prompts": prompts,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "spear_rl_code": code_provenance(),
        "wall_seconds": time.perf_counter() - started,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "summary": summaries,
        "pairs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    png = args.out.with_suffix(".png")
    title = (
        f"{args.prompts} prompts x {args.group_size} completions, <= {args.max_completion_tokens} "
        f"tokens, {args.layers}x{args.hidden} model, {args.threads} thread(s);\na fresh process per "
        f"measurement ({args.steps} steps, median of steps > {args.skip_first})"
    )
    plot(results, summaries, png, title)
    print(f"\nwrote {args.out} and {png} ({record['wall_seconds']:.0f} s)")


def code_provenance() -> dict[str, str]:
    """The git commit and a hash of the spear_rl sources as run (the tree may hold uncommitted work)."""
    import hashlib

    import spear_rl

    package = Path(spear_rl.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"git_commit": commit, "sources_sha256": digest.hexdigest()[:16]}


if __name__ == "__main__":
    main()
