"""spear-rl's GRPO against TRL's `GRPOTrainer` on the same work: time per step and reward curves.

Both sides get the same tiny model weights and tokenizer (built once, saved to a folder, loaded from
there by each side), the same single-turn task ("add two small numbers, answer in
<action>N</action>", reward 1 if right, else 0), the same prompts token for token, in the same
order, and the same batch (prompts per step), group size, max completion length, temperature 1.0,
learning rate (constant), one AdamW step per batch, grad-norm clip 1.0, KL coefficient 0, PPO clip
0.2 and token-mean loss aggregation (TRL's `loss_type="dapo"`), and the same torch thread count.
Each side runs in its own fresh Python process, one after the other, so neither inherits the
other's warm caches, threads or memory.

What cannot be made equal, by design of the two libraries, is listed in `docs/benchmarks.md`;
the main ones: TRL samples with HF `generate`, spear-rl with its own KV-cache loop; TRL runs through
`transformers.Trainer` (accelerate, callbacks, its logging), spear-rl through its own loop; the two
samplers draw different random streams, so the completions (and rewards) differ from step 1 on.

TRL is an optional benchmark dependency, not a spear-rl one:

    pip install --no-deps trl==1.16.0   # --no-deps keeps the installed torch; its other
                                        # dependencies (accelerate, datasets, ...) come with spear-rl's

Run (under a minute on a 2-core CPU with the defaults; --threads above the number of idle cores
makes torch's thread pool spin and everything 10-30x slower, on both sides):

    python benchmarks/vs_trl.py --steps 20 --prompts 8 --group-size 8 --threads 1

Writes benchmarks/results/vs_trl.json and benchmarks/results/vs_trl.png and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
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

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENV_NAME = "bench_sum"
INSTRUCTION = "You add numbers. Reply with only the sum, as <action>N</action>."
# system: the instruction is a system prompt every prompt starts with (the usual agent layout; the
# spear-rl update computes such a shared prefix once per batch). inline: no system prompt, the
# numbers come first, so no prefix is shared and both sides do the same per-row work.
PROMPT_LAYOUTS = ("system", "inline")
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
        "model": {"name_or_path": model_dir},
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
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = train(cfg, echo=lambda *_: None)
    wall = time.perf_counter() - started
    records = [r for r in read_metrics(result.run_dir) if r["step"] >= 1]
    step0 = next(r for r in read_metrics(result.run_dir) if r["step"] == 0)
    core, loop, previous_time = [], [], step0["time"]
    for r in records:
        eval_seconds = float(r.get("eval/seconds", 0.0))  # only the last step evaluates
        core.append(float(r["time/step"]) - eval_seconds)
        loop.append(float(r["time"]) - previous_time - eval_seconds)
        previous_time = float(r["time"])
    return {
        "step_seconds": core,
        "loop_seconds": loop,
        "generate_seconds": [float(r["time/generate"]) for r in records],
        "update_seconds": [float(r["time/update"]) for r in records],
        "reward": [float(r["reward/mean"]) for r in records],
        "completion_tokens_mean": [float(r["rollout/response_len_mean"]) for r in records],
        "run_wall_seconds": wall,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


# ---- TRL side ----------------------------------------------------------------------------------------
def run_trl_side(args: argparse.Namespace, model_dir: Path, work_dir: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    try:
        import trl
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
            self.loop: list[float] = []
            self.logs: list[dict[str, float]] = []
            self._begin = self._previous_end = 0.0

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self._previous_end = time.perf_counter()

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self._begin = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            now = time.perf_counter()
            self.core.append(now - self._begin)
            self.loop.append(now - self._previous_end)
            self._previous_end = now

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
        gradient_checkpointing=False,  # TRL defaults to on; spear-rl's model.gradient_checkpointing is off
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
    if getattr(trainer.args, "gradient_checkpointing", False):
        raise SystemExit(
            "TRL kept gradient checkpointing on; the comparison would not be like for like"
        )
    load_before = os.getloadavg()
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    # TRL's update = the step minus generating and scoring (its forward/backward and AdamW)
    update = [c - r for c, r in zip(timer.core, phases["rollout"], strict=True)]
    return {
        "step_seconds": timer.core,
        "loop_seconds": timer.loop,
        "generate_seconds": phases["generate"],
        "update_seconds": update,
        "trl_reported_step_time": [float(x.get("step_time", float("nan"))) for x in timer.logs],
        "reward": [float(x["reward"]) for x in timer.logs],
        "completion_tokens_mean": [
            float(x.get("completions/mean_length", float("nan"))) for x in timer.logs
        ],
        "run_wall_seconds": wall,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "trl_version": trl.__version__,
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


# ---- orchestration -----------------------------------------------------------------------------------
def run_side_in_subprocess(
    side: str, args: argparse.Namespace, model_dir: Path, work_dir: Path
) -> dict:
    out = work_dir / f"{side}.json"
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
    print(f"running the {side} side ...", flush=True)
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for name in SHARED_FLAGS:
        flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return flags


def summarise(sides: dict[str, dict], skip_first: int) -> dict[str, Any]:
    from spear_rl.experiments.tables import mean_std

    summary: dict[str, Any] = {}
    for side, data in sides.items():
        steps = data["step_seconds"][skip_first:]
        m, s = mean_std(steps)
        loop_m, loop_s = mean_std(data["loop_seconds"][skip_first:])
        tail = data["reward"][-3:]
        summary[side] = {
            "step_seconds_mean": m,
            "step_seconds_std": s,
            "step_seconds_median": statistics.median(steps) if steps else float("nan"),
            "generate_seconds_mean": mean_std(data["generate_seconds"][skip_first:])[0],
            "update_seconds_mean": mean_std(data["update_seconds"][skip_first:])[0],
            "loop_seconds_mean": loop_m,
            "loop_seconds_std": loop_s,
            "final_reward": data["reward"][-1] if data["reward"] else float("nan"),
            "final_reward_mean_last3": statistics.fmean(tail) if tail else float("nan"),
            "mean_completion_tokens": statistics.fmean(data["completion_tokens_mean"]),
            "run_wall_seconds": data["run_wall_seconds"],
        }
    trl_s, spear_s = summary["trl"], summary["spear"]
    summary["ratio_trl_over_spear"] = trl_s["step_seconds_mean"] / spear_s["step_seconds_mean"]
    summary["ratio_trl_over_spear_median"] = (
        trl_s["step_seconds_median"] / spear_s["step_seconds_median"]
    )
    summary["ratio_trl_over_spear_loop"] = trl_s["loop_seconds_mean"] / spear_s["loop_seconds_mean"]
    summary["spear_at_least_as_fast"] = summary["ratio_trl_over_spear"] >= 1.0
    return summary


def print_table(summary: dict[str, Any], skip_first: int) -> None:
    note = f" (steps {skip_first + 1}..N)" if skip_first else ""
    print()
    print(
        f"{'side':<8} {'s/step mean ± std' + note:<34} {'median':>8} {'sampling':>9} "
        f"{'update':>7} {'loop s/step':>12} {'tokens/compl':>13} {'final reward':>13} "
        f"{'last-3 reward':>14}"
    )
    for side in ("trl", "spear"):
        s = summary[side]
        spread = f"{s['step_seconds_mean']:.3f} ± {s['step_seconds_std']:.3f}"
        print(
            f"{side:<8} {spread:<34} {s['step_seconds_median']:>8.3f} "
            f"{s['generate_seconds_mean']:>9.3f} {s['update_seconds_mean']:>7.3f} "
            f"{s['loop_seconds_mean']:>12.3f} {s['mean_completion_tokens']:>13.1f} "
            f"{s['final_reward']:>13.3f} {s['final_reward_mean_last3']:>14.3f}"
        )
    print(
        f"\nratio TRL / spear-rl time per step: {summary['ratio_trl_over_spear']:.2f}x "
        f"(median {summary['ratio_trl_over_spear_median']:.2f}x, with logging/data loading "
        f"{summary['ratio_trl_over_spear_loop']:.2f}x)"
    )


def plot(sides: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = {"trl": "TRL GRPOTrainer", "spear": "spear-rl GRPO"}
    fig, (ax_reward, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
    for side, data in sides.items():
        steps = range(1, len(data["reward"]) + 1)
        ax_reward.plot(steps, data["reward"], marker="o", label=labels[side])
        ax_time.plot(
            range(1, len(data["step_seconds"]) + 1),
            data["step_seconds"],
            marker="o",
            label=labels[side],
        )
    ax_reward.set(xlabel="step", ylabel="mean reward (batch)", title="reward per step", ylim=(0, 1))
    ax_time.set(xlabel="step", ylabel="seconds", title="wall time per optimiser step")
    ax_time.set_ylim(bottom=0)
    for ax in (ax_reward, ax_time):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
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
    "warm_start_episodes",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="optimiser steps on each side")
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
    p.add_argument(
        "--prompt-layout",
        choices=PROMPT_LAYOUTS,
        default="system",
        help="system: a shared system prompt; inline: no shared prompt prefix (see PROMPT_LAYOUTS)",
    )
    p.add_argument("--layers", type=int, default=2, help="tiny model layers")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument(
        "--warm-start-episodes",
        type=int,
        default=2048,
        help="format-only SFT pairs before saving the shared weights (0 = none)",
    )
    p.add_argument(
        "--skip-first",
        type=int,
        default=1,
        help="warm-up steps left out of the timing statistics (still plotted)",
    )
    p.add_argument("--order", default="trl,spear", help="which side runs first")
    p.add_argument(
        "--out", type=Path, help="JSON path (PNG beside it); default results/vs_trl[.inline].json"
    )
    # internal: run one side in this process
    p.add_argument("--side", choices=("trl", "spear"), help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out is None:
        suffix = "" if args.prompt_layout == "system" else f".{args.prompt_layout}"
        args.out = RESULTS_DIR / f"vs_trl{suffix}.json"
    if args.steps <= args.skip_first:
        p.error("--steps must exceed --skip-first")
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

    order = [s.strip() for s in args.order.split(",")]
    if sorted(order) != ["spear", "trl"]:
        raise SystemExit("--order must name both sides, e.g. trl,spear")
    with tempfile.TemporaryDirectory(prefix="spear_vs_trl_") as tmp:
        work_dir = Path(tmp)
        model_dir = work_dir / "shared_model"
        print("building the shared tiny model ...", flush=True)
        model_info = build_shared_model(args, model_dir)
        prompts = check_same_prompts(args, model_dir)
        print(
            f"model: {model_info['parameters']:,} parameters, vocab {model_info['vocab']}; "
            f"{prompts['checked_identical']} prompts render to identical ids on both sides "
            f"({prompts['prompt_tokens_mean']:.0f} tokens on average, the first "
            f"{prompts['shared_prefix_tokens_per_step_min']} shared by all prompts of a step)",
            flush=True,
        )
        sides = {side: run_side_in_subprocess(side, args, model_dir, work_dir) for side in order}
    for side, data in sides.items():  # both must have done exactly the asked optimiser steps
        if not len(data["step_seconds"]) == len(data["reward"]) == args.steps:
            raise SystemExit(f"{side} recorded {len(data['step_seconds'])} steps, not {args.steps}")

    summary = summarise(sides, args.skip_first)
    print_table(summary, args.skip_first)
    settings = {name: getattr(args, name) for name in (*SHARED_FLAGS, "skip_first", "order")}
    record = {
        "benchmark": "spear-rl GRPO vs TRL GRPOTrainer, same work",
        "command": "python benchmarks/vs_trl.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings,
        "completions_per_step": args.prompts * args.group_size,
        "model": model_info,
        "prompts": prompts,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "spear_rl_code": code_provenance(),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "summary": summary,
        "per_step": sides,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=_jsonable))
    png = args.out.with_suffix(".png")
    title = (
        f"{args.prompts} prompts x {args.group_size} completions, "
        f"<= {args.max_completion_tokens} tokens, {model_info['parameters']:,}-param model, "
        f"torch threads {args.threads}: TRL/spear-rl time per step = "
        f"{summary['ratio_trl_over_spear']:.2f}x"
    )
    plot(sides, png, title)
    print(f"\nwrote {args.out} and {png}")


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


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


if __name__ == "__main__":
    main()
