"""The multi-turn agent loop: many episodes in lock-step, one batched generation per turn.

Each turn: render the prompt of every live episode, generate all responses in batches, decode each
response (`skip_special_tokens`, bad bytes become U+FFFD) and hand the raw text to `env.step`, which
parses it. Samples are recorded as the rollout happens, token-exact (see sample.py and prompts.py).

The envs live in an env pool (`spear_rl.envs.pool`: inline, worker processes or Ray actors, chosen by
`env.workers`), which steps all live episodes of a turn at once; the runner reads each env through
an `EnvView` the pool returns, never the env itself.

Failure handling: an env call that raises, exceeds `env_timeout_s` or loses its worker ends that
episode as failed (`Trajectory.timed_out`, `end_reason`; counted in `env_stats`); the turn it
happened on yields no sample, earlier turns keep theirs. A prompt longer than `max_prompt_tokens`
(after dropping history, per_turn) ends the episode as failed with `end_reason="prompt_too_long"`.
Nothing an env or the model does stops the rollout, except every env failing at reset (a setup
error, re-raised).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from spear_rl.envs.base import Env, StepResult
from spear_rl.envs.pool import EnvPool, EnvView, InlinePool
from spear_rl.models.tokenizer import pad_token_id, safe_decode, stop_token_ids
from spear_rl.rollout.config import RolloutConfig, check_rollout_config
from spear_rl.rollout.engines.base import GenerationEngine, Sampling
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.prompts import EpisodeRenderer
from spear_rl.rollout.sample import Sample, Trajectory, Turn

__all__ = ["RolloutConfig", "RolloutResult", "run_rollout"]


@dataclass
class RolloutResult:
    trajectories: list[Trajectory]
    samples: list[Sample]
    timings: dict[
        str, float
    ]  # seconds: "generate", "env", "prompt", "other" (they sum to the total)
    # rates and means; with an engine that reports them (hf) also the prefill counts:
    # "prefill_tokens" (prompt tokens run through the model), "prefill_tokens_full" (the sum of
    # the prompts' lengths: what prefilling each prompt whole would cost) and "kv_full_prefills"
    stats: dict[str, float]
    # the env pool's counters for this rollout: "env/worker_failures" (env calls that raised, hung
    # or lost their worker: each ended an episode), "env/workers_replaced"
    env_stats: dict[str, float] = field(default_factory=dict)


@dataclass
class _Episode:
    env: EnvView  # the env as last seen (it may live in a worker)
    trajectory: Trajectory
    renderer: EpisodeRenderer
    finished: bool = False
    prompt: list[int] = field(default_factory=list)  # what the model is fed this turn
    turn_truncated: list[bool] = field(default_factory=list)
    turn_parsed: list[bool] = field(default_factory=list)
    response_texts: list[str] = field(default_factory=list)
    first_observation: str = ""
    context_limit_hit: bool = False
    slot: int = 0  # the episode's place in the env pool


def run_rollout(
    model,
    tokenizer,
    envs: EnvPool | Callable[[], Env],
    task_seeds: Sequence[int],
    cfg: RolloutConfig,
    *,
    seed: int,
    step_offset_traj_id: int = 0,
    engine: GenerationEngine | None = None,
) -> RolloutResult:
    """Roll out `cfg.group_size` episodes of every task seed (group_id = index in task_seeds).

    `engine` generates the responses; None samples from `model` itself (the `hf` engine). `envs` is
    an env pool (kept open: its episodes are released at the end) or an env factory (stepped inline,
    with `cfg.env_timeout_s`)."""
    check_rollout_config(cfg)
    started = time.perf_counter()
    timings = {"generate": 0.0, "env": 0.0, "prompt": 0.0}
    stops = stop_token_ids(tokenizer)
    pad = pad_token_id(tokenizer)
    generator = torch.Generator(device=_generator_device(model)).manual_seed(seed)
    if engine is None:
        engine = HFEngine(model, pad, cfg.generation_batch_size, cfg.kv_reuse)
    sampling = Sampling(cfg.max_response_tokens, tuple(stops), cfg.temperature, cfg.top_p)
    counters = {"generated_turns": 0, "response_tokens": 0, "prompt_tokens": 0, "truncated": 0}
    prefill = {"prefill_tokens": 0, "prefill_tokens_full": 0, "kv_full_prefills": 0}
    counted = False  # whether the engine said what it prefilled (the hf engine does)

    pool = envs if isinstance(envs, EnvPool) else InlinePool(envs, cfg.env_timeout_s)
    episodes: list[_Episode] = []
    for group_id, task_seed in enumerate(task_seeds):
        for _ in range(cfg.group_size):
            traj_id = step_offset_traj_id + len(episodes)
            view = EnvView()
            trajectory = Trajectory(group_id, traj_id, int(task_seed), task="")
            renderer = EpisodeRenderer(tokenizer, view, cfg)
            episodes.append(_Episode(view, trajectory, renderer, slot=len(episodes)))
    t0 = time.perf_counter()
    calls = pool.reset([e.trajectory.task_seed for e in episodes])
    timings["env"] += time.perf_counter() - t0
    for episode, call in zip(episodes, calls, strict=True):
        if not call.ok:
            _finish(episode, cfg, str(call.failure), timed_out=True)
            continue
        episode.env.update(call.view)
        episode.trajectory.task = episode.env.task
        episode.first_observation = episode.env.observation
    if episodes and not any(call.ok for call in calls):
        _end_with_pool(pool, envs)  # every env failing at reset is a setup error
        raise calls[0].error or RuntimeError(f"every env failed at reset: {calls[0].failure}")

    for _turn in range(cfg.max_turns):
        t0 = time.perf_counter()
        live = []
        for episode in (e for e in episodes if not e.finished):
            prompt = episode.renderer.next_prompt()
            if prompt is None:
                episode.context_limit_hit = True
                _finish(episode, cfg, "prompt_too_long", timed_out=False)
                continue
            episode.prompt = prompt
            live.append(episode)
        timings["prompt"] += time.perf_counter() - t0
        if not live:
            break

        t0 = time.perf_counter()
        outputs = engine.generate([e.prompt for e in live], sampling, generator)
        timings["generate"] += time.perf_counter() - t0

        texts = []
        for episode, out in zip(live, outputs, strict=True):
            counters["generated_turns"] += 1
            counters["response_tokens"] += len(out.token_ids)
            counters["prompt_tokens"] += len(episode.prompt)
            counters["truncated"] += int(out.truncated)
            if out.prefilled is not None:
                counted = True
                prefill["prefill_tokens"] += out.prefilled
                prefill["prefill_tokens_full"] += len(episode.prompt)
                # a later turn that prefilled its whole prompt: nothing kept or shared matched
                prefill["kv_full_prefills"] += int(
                    bool(episode.trajectory.turns) and not out.reused
                )
            texts.append(safe_decode(tokenizer, out.token_ids))
        t0 = time.perf_counter()
        calls = pool.step([e.slot for e in live], texts)
        timings["env"] += time.perf_counter() - t0
        for episode, out, text, call in zip(live, outputs, texts, calls, strict=True):
            if not call.ok:
                _finish(episode, cfg, str(call.failure), timed_out=True)
                continue
            view = episode.env
            anchor, observation = view.anchor, view.observation
            view.update(call.view)
            _record_turn(episode, cfg, out, text, anchor, observation, call.result)
            if call.result.done:
                _finish(episode, cfg, "done", timed_out=False)

    for episode in episodes:
        if not episode.finished:
            _finish(episode, cfg, "max_turns", timed_out=False)
    env_stats = _end_with_pool(pool, envs)

    trajectories = [e.trajectory for e in episodes]
    samples = [s for t in trajectories for s in t.samples]
    total = time.perf_counter() - started
    timings["other"] = max(0.0, total - sum(timings.values()))
    stats = _stats(trajectories, counters)
    if counted:
        stats.update({k: float(v) for k, v in prefill.items()})
    return RolloutResult(trajectories, samples, timings, stats, env_stats)


def _end_with_pool(pool: EnvPool, envs: EnvPool | Callable[[], Env]) -> dict[str, float]:
    """Close this rollout's envs (a pool we were handed stays up); its counters, as metrics."""
    if pool is envs:
        pool.release()
    else:
        pool.close()
    return {f"env/{k}": float(v) for k, v in pool.take_counters().items()}


def _record_turn(
    episode: _Episode,
    cfg: RolloutConfig,
    out,
    text: str,
    anchor: str,
    observation: str,
    result: StepResult,
) -> None:
    info = result.info
    valid = bool(info.get("valid", False))
    trajectory = episode.trajectory
    turn_index = len(trajectory.turns)
    trajectory.turns.append(
        Turn(observation, text, info.get("action"), float(result.reward), valid)
    )
    trajectory.episode_reward += float(result.reward)
    trajectory.all_turns_count += 1
    trajectory.invalid_turns += int(not valid)
    trajectory.tool_calls += int(bool(info.get("tool_call", False)))
    episode.turn_truncated.append(bool(out.truncated))
    parsed = bool(info.get("parsed", False))  # Env.step sets it; absent for a crashed env call
    episode.turn_parsed.append(parsed)
    episode.response_texts.append(text)
    if cfg.layout == "per_turn":
        trajectory.samples.append(
            Sample(
                prompt_ids=list(episode.prompt),
                response_ids=list(out.token_ids),
                loss_mask=[1] * len(out.token_ids),
                old_logprobs=list(out.logprobs),
                group_id=trajectory.group_id,
                traj_id=trajectory.traj_id,
                turn=turn_index,
                anchor=anchor,
                step_reward=float(result.reward),
                valid=valid,
                parsed=parsed,
                num_invalid=int(not valid),
                truncated=bool(out.truncated),
                response_text=text,
                task_seed=trajectory.task_seed,
            )
        )
    episode.renderer.record(observation, out.token_ids, out.logprobs, text, result)


def _finish(episode: _Episode, cfg: RolloutConfig, reason: str, timed_out: bool) -> None:
    episode.finished = True
    trajectory = episode.trajectory
    trajectory.end_reason = reason
    trajectory.timed_out = timed_out
    # A failed env call leaves env.won at whatever it was; a crashed episode is never a win.
    trajectory.won = bool(episode.env.won) and not timed_out
    renderer = episode.renderer
    if cfg.layout == "whole" and trajectory.turns and renderer.first_prompt is not None:
        # End on the last model token: drop an env message appended for a turn that never came.
        kept = _last_model_token_end(renderer.loss_mask)
        trajectory.samples.append(
            Sample(
                prompt_ids=list(renderer.first_prompt),
                response_ids=renderer.conversation_ids[:kept],
                loss_mask=renderer.loss_mask[:kept],
                old_logprobs=renderer.logprobs[:kept],
                group_id=trajectory.group_id,
                traj_id=trajectory.traj_id,
                turn=0,
                anchor=episode.first_observation,
                step_reward=trajectory.episode_reward,
                valid=trajectory.invalid_turns == 0,
                parsed=all(episode.turn_parsed),
                num_invalid=trajectory.invalid_turns,
                truncated=any(episode.turn_truncated) or episode.context_limit_hit,
                response_text="\n".join(episode.response_texts),
                task_seed=trajectory.task_seed,
            )
        )
    for sample in trajectory.samples:
        sample.episode_reward = trajectory.episode_reward
        sample.won = trajectory.won
        sample.tool_calls = trajectory.tool_calls
        sample.all_turns_count = trajectory.all_turns_count


def _last_model_token_end(loss_mask: list[int]) -> int:
    """Length of the conversation up to and including the last model-generated token."""
    for i in range(len(loss_mask) - 1, -1, -1):
        if loss_mask[i]:
            return i + 1
    return 0


def _stats(trajectories: list[Trajectory], counters: dict[str, int]) -> dict[str, float]:
    episodes = max(1, len(trajectories))
    turns = sum(t.all_turns_count for t in trajectories)
    generated = max(1, counters["generated_turns"])
    return {
        "episodes": float(len(trajectories)),
        "success_rate": sum(t.won for t in trajectories) / episodes,
        "mean_episode_reward": sum(t.episode_reward for t in trajectories) / episodes,
        "mean_turns": turns / episodes,
        "invalid_rate": sum(t.invalid_turns for t in trajectories) / max(1, turns),
        "tool_call_rate": sum(t.tool_calls for t in trajectories) / max(1, turns),
        "response_len_mean": counters["response_tokens"] / generated,
        "prompt_len_mean": counters["prompt_tokens"] / generated,
        "truncated_rate": counters["truncated"] / generated,
        "timed_out_rate": sum(t.timed_out for t in trajectories) / episodes,
        "prompt_too_long_rate": sum(t.end_reason == "prompt_too_long" for t in trajectories)
        / episodes,
    }


def _generator_device(model) -> torch.device:
    device = next(model.parameters()).device
    return device if device.type in ("cpu", "cuda") else torch.device("cpu")
