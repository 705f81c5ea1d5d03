"""SFT cold start: imitate the env's expert before RL, on exactly the prompts the rollout renders.

Expert episodes are played through the same `EpisodeRenderer` the rollout uses, so every SFT prompt
is token-for-token the prompt the policy will see in that state (tested). Targets are
`env.format_action(env.expert_action(), thought)` followed by the end-of-turn token; the loss is the
mean negative log-likelihood over target tokens (plus, optionally, a weighted next-token loss on the
prompt tokens: see `SFTConfig.prompt_loss_weight`).

Rows are what RL trains on: a turn each in the `per_turn` layout; in the `whole` layout, where a
turn's prompt is the conversation so far, one row per expert episode (its responses and the env's
replies between them), so the history is computed once instead of once per later turn.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from spear_rl.envs.base import Env
from spear_rl.fields import ConfigError, Settings, setting
from spear_rl.models.forward import token_logprobs
from spear_rl.models.tokenizer import end_of_turn_id, pad_token_id
from spear_rl.rollout.batch import collate_samples
from spear_rl.rollout.config import RolloutConfig
from spear_rl.rollout.prompts import EpisodeRenderer, render_user_message
from spear_rl.rollout.sample import Sample
from spear_rl.train.precision import PRECISIONS, adamw, autocast, resolve_precision

# Bump when the rows SFT trains on change for the same settings (the warm-start cache keys it).
SFT_ROWS_VERSION = 2  # 2: whole-layout episodes as one row

# Share of corpus-walk turns that take a random (often useless or invalid) action, so the tokenizer
# also sees off-expert observations and the invalid-turn feedback.
CORPUS_RANDOM_ACTION_RATE = 0.3
_CORPUS_JUNK_RESPONSES = ["", "I am not sure.", "<action></action>", "<think>hmm</think>"]


@dataclass
class SFTConfig(Settings):
    """The SFT warm start on the env's expert. Defaults tuned for the tiny model on Sokoban (~4 min
    on a busy 2-core CPU): 14-40% held-out success after SFT over 3 seeds, vs 5-7% at random."""

    section = "sft"

    episodes: int = setting(1024, "expert episodes (task seeds 0..episodes-1); 0 skips SFT", ge=0)
    epochs: int = setting(3, "passes over the expert data", ge=1)
    lr: float = setting(2e-3, "AdamW learning rate", ge=0)
    batch_size: int = setting(
        16,
        "expert responses (turns) per optimiser step; in the whole layout a batch holds whole "
        "episodes, up to this many turns",
        ge=1,
    )
    max_seconds: float = setting(0, "stop after this much training time; 0 = no cap", ge=0)
    thought: str = setting("", "text inside <think> for expert responses")
    grad_clip: float = setting(1.0, "max gradient norm; 0 = off", ge=0)
    lr_decay: bool = setting(True, "cosine decay of lr to 0 over the planned steps")
    # A tiny model trained from scratch needs it: with response-only loss it stayed at the
    # uniform-action plateau on Sokoban for 1000+ steps; predicting observations teaches it to read.
    prompt_loss_weight: float = setting(
        1.0,
        "weight of a next-token loss on prompt tokens; 0 = response tokens only (pretrained models)",
        ge=0,
    )
    cache_dir: str = setting(
        "auto",
        "folder that caches the warmed-up policy, keyed by exactly what SFT reads: auto = "
        "$SPEAR_CACHE_DIR/sft or ~/.cache/spear-rl/sft; a path; off (or empty) = no cache",
    )
    precision: str = setting(
        "float32",
        "arithmetic of the warm start's forward pass: float32; bfloat16 (autocast: weights, "
        "gradients and AdamW stay in the parameter dtype); auto = bfloat16 where the device "
        "multiplies it natively (a CPU with AMX or AVX512-BF16, a CUDA GPU), else float32",
        choices=PRECISIONS,
    )
    # DART (Laskey et al. 2017): a policy that never saw its own slips drifts off after the first.
    detour_rate: float = setting(
        0.0,
        "share of expert turns replaced by a random admissible action (kept in the history, not "
        "trained on), so the data shows recoveries",
        ge=0,
        lt=1,
    )


def expert_trajectories(
    tokenizer,
    env_factory: Callable[[], Env],
    seeds: Sequence[int],
    rollout_cfg: RolloutConfig,
    thought: str = "",
    detour_rate: float = 0.0,
) -> list[list[tuple[list[int], list[int]]]]:
    """Per expert episode, the (prompt_ids, response_ids) of each turn.

    prompt_ids: what the rollout would feed the model in that state (per_turn prompt, or the whole
    conversation so far in the whole layout); response_ids: the formatted expert action + end-of-turn.
    An episode stops when the env has no expert action, the prompt no longer fits, or max_turns.
    """
    episodes, _ = _play_experts(tokenizer, env_factory, seeds, rollout_cfg, thought, detour_rate)
    return [[(prompt, response) for prompt, response, trained in e if trained] for e in episodes]


def _play_experts(tokenizer, env_factory, seeds, rollout_cfg, thought, detour_rate=0.0):
    """Per episode, every turn's (prompt_ids, response_ids, trained); detours are not trained."""
    end = end_of_turn_id(tokenizer)
    episodes: list[list[tuple[list[int], list[int], bool]]] = []
    wins = 0
    for seed in seeds:
        env = env_factory()
        try:
            env.reset(int(seed))
            renderer = EpisodeRenderer(tokenizer, env, rollout_cfg)
            turns: list[tuple[list[int], list[int], bool]] = []
            rng = random.Random(int(seed))
            for _ in range(rollout_cfg.max_turns):
                prompt = renderer.next_prompt()
                action = env.expert_action()
                if prompt is None or action is None:
                    break
                detour = bool(env.admissible_actions) and rng.random() < detour_rate
                if detour:
                    action = rng.choice(env.admissible_actions)
                text = env.format_action(action, thought)
                response = tokenizer.encode(text, add_special_tokens=False) + [end]
                observation = env.observation
                result = env.step(text)
                turns.append((prompt, response, not detour))
                renderer.record(observation, response, [0.0] * len(response), text, result)
                if result.done:
                    break
            wins += int(env.won)
            episodes.append(turns)
        finally:
            env.close()
    return episodes, wins


def sft_corpus_texts(env_factory: Callable[[], Env], seeds: Sequence[int]) -> Iterator[str]:
    """Texts to train the tiny tokenizer on: system prompt, tasks, rendered user messages (with
    history and admissible actions), observations, feedback, expert and random responses."""
    first = True
    for seed in seeds:
        rng = random.Random(int(seed))
        env = env_factory()
        try:
            observation = env.reset(int(seed))
            if first:
                yield env.system_prompt
                first = False
            history: list[tuple[str, str]] = []
            for _ in range(64):
                admissible = env.admissible_actions
                yield render_user_message(env.task, history[-2:], observation, admissible)
                action = env.expert_action()
                if action is None or rng.random() < CORPUS_RANDOM_ACTION_RATE:
                    action = rng.choice(admissible) if admissible and rng.random() < 0.7 else None
                text = env.format_action(action) if action else rng.choice(_CORPUS_JUNK_RESPONSES)
                yield text
                result = env.step(text)
                feedback = result.info.get("feedback")
                if feedback:
                    yield feedback
                history.append((observation, action or text))
                observation = env.observation
                if result.done:
                    break
        finally:
            env.close()


def sft_rows(
    episodes: Sequence[Sequence[tuple[list[int], list[int], bool]]], layout: str
) -> list[tuple[Sample, int]]:
    """The rows SFT trains on, each with its number of trained turns.

    `per_turn`: a row per trained turn. `whole`: a row per episode, as the rollout's whole-layout
    sample: the first prompt, then every response (loss mask 1; 0 for a detour) and the tokens the
    env and the chat template put between them (0). Each response is scored on the same tokens as
    in its own row (a turn's prompt is the conversation so far), so the loss is the same while the
    shared history is computed once. An episode whose prompts do not extend one another (a chat
    template that rewrites earlier turns) keeps a row per turn.
    """
    rows: list[tuple[Sample, int]] = []

    def add(prompt: list[int], response: list[int], mask: list[int], trained: int) -> None:
        if trained:
            sample = Sample(prompt, response, mask, [0.0] * len(response), 0, len(rows))
            rows.append((sample, trained))

    for turns in episodes:
        if layout == "whole" and turns and _extends(turns):
            prompt = turns[0][0]
            last_prompt, last_response, _ = turns[-1]
            mask = [0] * (len(last_prompt) + len(last_response) - len(prompt))
            for turn_prompt, response, trained in turns:
                start = len(turn_prompt) - len(prompt)
                mask[start : start + len(response)] = [int(trained)] * len(response)
            trained_turns = sum(trained for _, _, trained in turns)
            add(prompt, (last_prompt + last_response)[len(prompt) :], mask, trained_turns)
            continue
        for prompt, response, trained in turns:
            add(prompt, response, [int(trained)] * len(response), int(trained))
    return rows


def _extends(turns: Sequence[tuple[list[int], list[int], bool]]) -> bool:
    """Whether each turn's prompt starts with the previous turn's prompt and response."""
    return all(
        later[: len(prompt) + len(response)] == prompt + response
        for (prompt, response, _), (later, _, _) in itertools.pairwise(turns)
    )


def sft_batches(
    turns: Sequence[int], batch_size: int, epochs: int, rng: random.Random
) -> list[list[list[int]]]:
    """Per epoch, the rows of each optimiser step: the rows in a new random order, cut into batches
    of at most `batch_size` trained turns (a row that alone holds more is a batch of its own), so a
    step learns from as many responses whether an episode is one row or several."""
    planned = []
    for _ in range(epochs):
        order = list(range(len(turns)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        held = batch_size  # turns in the last batch: a full one starts a new batch
        for row in order:
            if held + turns[row] > batch_size:
                batches.append([])
                held = 0
            batches[-1].append(row)
            held += turns[row]
        planned.append(batches)
    return planned


def run_sft(
    model,
    tokenizer,
    env_factory: Callable[[], Env],
    seeds: Sequence[int],
    rollout_cfg: RolloutConfig,
    sft_cfg: SFTConfig,
    *,
    seed: int,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train on expert turns (loss on response tokens only, AdamW). Returns stats: loss_first,
    loss_last, steps, pairs (trained turns), rows, expert_success_rate, tokens_per_s, seconds, ..."""
    started = time.perf_counter()
    episodes, wins = _play_experts(
        tokenizer, env_factory, seeds, rollout_cfg, sft_cfg.thought, sft_cfg.detour_rate
    )
    rows = sft_rows(episodes, rollout_cfg.layout)
    samples = [sample for sample, _ in rows]
    data_seconds = time.perf_counter() - started
    stats: dict = {
        "episodes": len(episodes),
        "pairs": sum(turns for _, turns in rows),
        "rows": len(rows),
        "expert_success_rate": wins / max(1, len(episodes)),
        "data_seconds": data_seconds,
    }
    if not samples and episodes:
        # no silent no-op: SFT was asked for, and the env gave it nothing to imitate
        raise ConfigError(
            f"sft.episodes={len(episodes)}, but the env's expert_action() gave no action in any "
            "of them: implement expert_action, or set sft.episodes: 0 to skip the warm start"
        )
    if not samples:
        return {**stats, "steps": 0, "seconds": time.perf_counter() - started}

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=sft_cfg.lr)
    rng = random.Random(seed)
    epochs = sft_batches([turns for _, turns in rows], sft_cfg.batch_size, sft_cfg.epochs, rng)
    steps_per_epoch = len(epochs[0])
    planned = sum(len(batches) for batches in epochs)
    pad = pad_token_id(tokenizer)
    device = next(model.parameters()).device
    precision = resolve_precision(sft_cfg.precision, device)
    was_training = model.training
    model.train()

    losses: list[float] = []
    tokens = response_tokens = 0
    step = 0
    train_started = time.perf_counter()
    stopped_early = False
    for epoch, batches in enumerate(epochs):
        for rows_of_batch in batches:
            batch = collate_samples([samples[i] for i in rows_of_batch], pad)
            batch = batch.to(device)
            if sft_cfg.lr_decay:
                for group in optimizer.param_groups:
                    group["lr"] = sft_cfg.lr * 0.5 * (1 + math.cos(math.pi * step / planned))
            mask = batch.loss_mask
            # without a prompt loss only the response tokens need scoring (the LM head skips prompts)
            scored = None if sft_cfg.prompt_loss_weight else mask
            with autocast(precision, device):
                logp, _ = token_logprobs(
                    model, batch.input_ids, batch.attention_mask, score_mask=scored
                )
            loss = -(logp * mask).sum() / mask.sum().clamp(min=1)
            total = loss
            if sft_cfg.prompt_loss_weight:
                prompt_mask = batch.attention_mask.to(mask.dtype) - mask
                prompt_mask[:, 0] = 0.0  # the first token has no prediction
                prompt_loss = -(logp * prompt_mask).sum() / prompt_mask.sum().clamp(min=1)
                total = loss + sft_cfg.prompt_loss_weight * prompt_loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if sft_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, sft_cfg.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            tokens += int(batch.attention_mask.sum())
            response_tokens += int(mask.sum())
            elapsed = time.perf_counter() - train_started
            if progress is not None:
                progress(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": losses[-1],
                        "planned_steps": planned,
                        "seconds": elapsed,
                    }
                )
            if sft_cfg.max_seconds and elapsed >= sft_cfg.max_seconds:
                stopped_early = True
                break
        if stopped_early:
            break
    optimizer.zero_grad(set_to_none=True)
    model.train(was_training)
    train_seconds = time.perf_counter() - train_started
    tail = losses[-max(1, min(len(losses), steps_per_epoch // 4 or 1)) :]
    return {
        **stats,
        "steps": step,
        "planned_steps": planned,
        "precision": precision,
        "stopped_early": stopped_early,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_last_mean": sum(tail) / len(tail),
        "tokens": tokens,
        "response_tokens": response_tokens,
        "tokens_per_s": tokens / max(train_seconds, 1e-9),
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - started,
    }
