"""The RL trainer: one loop, readable top to bottom (spec §7).

    rollout -> rewards, filters, advantages, group filter -> update (on-policy + replay term)
            -> replay buffer maintenance -> log -> evaluate / checkpoint

Everything it calls is a named function elsewhere; this file only wires them in order.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from spear_rl.algos.replay import ReplayBuffer, ReplayItem
from spear_rl.algos.schedules import replay_coefficient, toolcall_weight
from spear_rl.envs.pool import EnvPool
from spear_rl.rollout.runner import run_rollout
from spear_rl.train.checkpoint import (
    SFT_POLICY_DIR,
    CheckpointWriteError,
    check_free_space,
    checkpoint_bytes,
    restore_rng_states,
    rng_states,
)
from spear_rl.train.config import Config
from spear_rl.train.dist_state import (
    my_rank_state,
    replay_shard_config,
    restore_optimizer,
    share_run_start,
    write_checkpoint,
)
from spear_rl.train.distributed import (
    SilentLogger,
    all_gather_concat,
    barrier,
    check_same_on_all_ranks,
    init_distributed,
    my_share,
    rank_seed,
    reduce_metrics,
)
from spear_rl.train.evaluate import evaluate_at_step, is_eval_step
from spear_rl.train.interrupt import StopRequest, interrupted, stop_at_step_end
from spear_rl.train.metrics import MetricsLogger, Progress, log_sft_stats
from spear_rl.train.parallel import broadcast_parameters, full_weights, wrap_model
from spear_rl.train.precision import adamw
from spear_rl.train.rollout_engine import (
    recompute_old_logprobs,
    start_engine,
    sync_rollout_engine,
)
from spear_rl.train.run_dir import (
    RunStart,
    TrainResult,
    checkpoint_failed,
    discard_if_empty,
    last_eval_success,
    start_run,
    write_result,
)
from spear_rl.train.runtime import (
    derive_seed,
    frozen_copy,
    open_env_pool,
    task_seeds,
    warmup_lambda,
)
from spear_rl.train.scoring import ScoredBatch, score_batch
from spear_rl.train.settings import replay_uses_std, update_settings
from spear_rl.train.update import policy_update
from spear_rl.train.warm_start import build_policy, initial_policy


def train(
    cfg: Config | None = None,
    resume: str | Path | None = None,
    resume_overrides: dict[str, Any] | None = None,
    echo=print,
) -> TrainResult:
    """Run a training run, or resume one (its saved config, plus e.g. a larger `train.steps`).
    Ctrl-C in the loop stops after the current step with a checkpoint (interrupt.py); a failed
    checkpoint write cuts the metrics back to the last complete checkpoint and says so."""
    ctx = init_distributed()  # torchrun: join the other ranks; else world size 1
    # every check that needs no work, first; rank 0 alone makes the folder, the others follow
    start = share_run_start(start_run(cfg, resume, resume_overrides) if ctx.is_main else None, ctx)
    try:
        with stop_at_step_end(echo) as stop, open_env_pool(start.cfg, start.env_factory) as envs:
            return run(start, stop, echo, envs)
    except KeyboardInterrupt:
        discard_if_empty(start)
        raise interrupted(start.run_dir) from None
    except CheckpointWriteError as err:
        raise checkpoint_failed(start.run_dir, err) from err
    except BaseException:
        discard_if_empty(start)  # a failed start leaves no empty run folder behind
        raise


def run(start: RunStart, stop: StopRequest, echo, envs: EnvPool) -> TrainResult:
    """The run itself: policy, optimiser and buffer, then the loop (rollouts step `envs`)."""
    t_start = time.time()
    cfg, run_dir, checkpoint = start.cfg, start.run_dir, start.checkpoint
    device, env_factory = start.device, start.env_factory
    ctx = init_distributed()
    echo = echo if ctx.is_main else lambda *_: None
    echo(f"run folder: {run_dir}")

    # ---- policy: fresh + SFT warm start (or its cached copy), or from the checkpoint ----------------
    logger = (
        MetricsLogger(run_dir, cfg.log, cfg.to_dict(), resume=checkpoint is not None)
        if ctx.is_main
        else SilentLogger()
    )
    if checkpoint is None and not ctx.is_main:  # rank 0 alone warms up; its weights come below
        model, tokenizer, sft_stats = *build_policy(cfg, env_factory, None), {}
    elif checkpoint is None:
        # kept in the run folder until the first checkpoint: Ctrl-C after SFT does not lose it
        model, tokenizer, sft_stats = initial_policy(
            cfg, env_factory, echo, keep_in=run_dir / SFT_POLICY_DIR
        )
        if sft_stats:
            log_sft_stats(logger, sft_stats)
            echo(f"SFT done: {fmt_stats(sft_stats)}")
    else:
        model, tokenizer = build_policy(cfg, env_factory, checkpoint)
    model.to(device)
    broadcast_parameters(model)  # every rank starts from rank 0's weights
    check_same_on_all_ranks("the tokenizer", str(sorted(tokenizer.get_vocab().items())))
    # before the RNG restore below: vLLM seeds the global RNGs when it starts
    engine, probe = start_engine(cfg, model, tokenizer, env_factory, echo)

    ref_model = frozen_copy(model) if cfg.algo.kl_coef > 0 else None
    train_model = wrap_model(model, ctx, cfg.train.parallel)  # the model itself in one process
    # FSDP gathers the weights for generation only where the policy generates (vLLM and the hf
    # engine's bf16 copy have their own)
    policy_generates = engine.shares_weights
    optimizer = adamw(
        [p for p in train_model.parameters() if p.requires_grad],
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.train.warmup_steps))
    # The one place that decides whether this run replays past wins (SPEAR's self-imitation).
    replay = (
        ReplayBuffer(
            replay_shard_config(cfg.replay, ctx.world_size),  # each rank keeps what it admitted
            seed=rank_seed(cfg.train.seed, ctx.rank),
            use_std=replay_uses_std(cfg),
        )
        if cfg.replay.enabled
        else None
    )
    settings = update_settings(cfg, tokenizer, device)
    if "auto" in (cfg.rollout.precision, cfg.train.precision):  # say what `auto` became here
        sampling = str(engine.dtype).removeprefix("torch.")
        echo(f"RL arithmetic: sampling in {sampling}, the update in {settings.precision}")
    check_free_space(run_dir, checkpoint_bytes(model))  # a cached or resumed start: checked here
    start_step, success_before = 0, float("nan")
    if checkpoint is not None:
        state = start.state
        mine = my_rank_state(state, ctx)  # replay shard and RNG streams of this rank
        restore_optimizer(train_model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if replay is not None and mine.get("replay") is not None:
            replay.load_state_dict(mine["replay"])
        restore_rng_states(mine["rng"])
        start_step, success_before = state["step"], state["success_before"]
        echo(f"resumed from {checkpoint} at step {start_step}")
    else:
        with full_weights(train_model, policy_generates) as policy:
            metrics = evaluate_at_step(policy, tokenizer, envs, cfg, run_dir, 0, engine)
        success_before = metrics["eval/success_rate"]
        logger.log(0, metrics)
        echo(f"held-out success before RL: {success_before:.3f}")

    # ---- the loop ---------------------------------------------------------------------------------
    progress = Progress(cfg.train.steps, start_step, cfg.log.progress and ctx.is_main)
    stop.armed = True  # from here the first Ctrl-C finishes the step, checkpoints it and stops
    for step in range(start_step + 1, cfg.train.steps + 1):
        t0 = time.time()
        toolcall_w = toolcall_weight(step, cfg.algo.toolcall_schedule, cfg.algo.toolcall_steps)
        replay_c = (
            replay_coefficient(step, cfg.replay.coef, cfg.replay.warmup_steps)
            if replay is not None
            else 0.0
        )

        # 1. roll out batch_tasks x group_size episodes (each rank its share of the tasks)
        model.eval()
        with full_weights(train_model, policy_generates) as policy:
            rollout = run_rollout(
                policy,
                tokenizer,
                envs,
                my_share(task_seeds(cfg, step), ctx),
                cfg.rollout,
                seed=rank_seed(derive_seed(cfg.train.seed, step, "rollout"), ctx.rank),
                engine=engine,
            )
        engine.sleep()  # CUDA vLLM: its memory goes to the update
        # 2. rewards, response filters, advantages, group filter
        scored = score_batch(rollout.trajectories, cfg.algo, toolcall_w)
        # another engine's log-probs are recomputed by the policy; FSDP gathers its weights for
        # that, as ranks run different numbers of forwards
        with full_weights(train_model, not policy_generates) as policy:
            engine_metrics = recompute_old_logprobs(engine, policy, scored.train, settings)
        # 3. update: on-policy mini-batches with the replay term
        t_update = time.time()
        generator = torch.Generator().manual_seed(derive_seed(cfg.train.seed, step, "update"))

        def draw_replay(n: int, _step: int = step) -> list:
            return [(item.payload, adv) for item, adv in replay.draw(n, _step)]

        update_metrics = policy_update(
            train_model,
            optimizer,
            scored.train,
            draw_replay if replay is not None else None,
            replay_c,
            settings,
            generator,
            ref_model,
        )
        if update_metrics["actor/optimizer_steps"]:
            scheduler.step()  # warm-up counts optimiser steps; a step that trained nothing waits
        # the one place where the engine gets the new weights (checked; hf shares them)
        engine_metrics.update(sync_rollout_engine(engine, model, probe))
        t_replay = time.time()
        # 4. replay buffer maintenance: evict stale, record baselines, admit this step's wins
        buffer_metrics = maintain_buffer(replay, scored, step)

        metrics = {
            **{f"rollout/{k}": v for k, v in rollout.stats.items()},
            **rollout.env_stats,  # env/worker_failures, env/workers_replaced
            **scored.metrics,
            **update_metrics,
            **buffer_metrics,
            **engine_metrics,
            "coef/toolcall_weight": toolcall_w,
            "coef/replay": replay_c,
            "lr": scheduler.get_last_lr()[0],
            "time/generate": rollout.timings.get("generate", 0.0),
            "time/env": rollout.timings.get("env", 0.0),
            "time/update": t_replay - t_update,
            "time/replay_maintenance": time.time() - t_replay,
        }
        # 5. evaluate and checkpoint
        if is_eval_step(cfg, step):
            with full_weights(train_model, policy_generates) as policy:
                metrics.update(
                    evaluate_at_step(policy, tokenizer, envs, cfg, run_dir, step, engine)
                )
        metrics["time/step"] = time.time() - t0
        metrics = reduce_metrics(metrics)  # over ranks: counts summed, means averaged
        logger.log(step, metrics)
        progress.update(step, metrics)
        if (
            cfg.train.checkpoint_every
            and step % cfg.train.checkpoint_every == 0
            or step == cfg.train.steps
            or stop.requested
        ):
            # every rank hands in its state (FSDP: writes its optimiser shard); rank 0 writes
            # the model folder and state.pt
            write_checkpoint(
                run_dir,
                step,
                train_model,
                optimizer,
                tokenizer,
                rank_state={
                    "replay": replay.state_dict() if replay is not None else None,
                    "rng": rng_states(),
                },
                shared={"scheduler": scheduler.state_dict(), "success_before": success_before},
            )
        if stop.requested:
            raise KeyboardInterrupt  # Ctrl-C: this step is checkpointed, stop here
    progress.close()
    logger.close()
    engine.close()

    barrier()  # rank 0's last metrics line is written
    success_after = last_eval_success(run_dir)
    result = TrainResult(
        run_dir,
        success_before,
        success_after,
        time.time() - t_start,
        cfg.train.steps,
        cfg.train.eval_episodes,
    )
    if ctx.is_main:
        write_result(result)
    return result


# ---- the named pieces the loop calls ---------------------------------------------------------------
# Replay items get group ids unique across steps: step * this + the group's index in its step.
GROUP_ID_STRIDE = 1_000_000


def maintain_buffer(
    replay: ReplayBuffer | None, scored: ScoredBatch, step: int
) -> dict[str, float]:
    """Spec §6 after-update order: evict stale samples, record this step's baselines, admit wins."""
    if replay is None:
        return {}
    evicted = replay.evict_stale(step)
    # the baseline history is global: every rank records every rank's groups, in rank order
    means, stds = scored.baselines(kept_only=replay.cfg.baseline_groups == "kept")
    replay.record_baselines(all_gather_concat(means), all_gather_concat(stds))
    admitted = replay.admit(
        [
            ReplayItem(
                payload=slim(sample),
                reward=sample.reward,
                advantage=sample.advantage,
                step=step,
                group_id=step * GROUP_ID_STRIDE + sample.group_id,
                tool_calls=sample.tool_calls,
            )
            for sample in scored.train
            if any(sample.loss_mask)  # a filtered sample has no loss to imitate
        ]
    )
    stats = {f"replay/{k}": float(v) for k, v in replay.stats(step).items()}
    stats["replay/admitted"] = float(admitted)
    stats["replay/evicted"] = float(evicted)
    return stats


def slim(sample):
    """The buffer keeps what training needs, not the rendered text."""
    return dataclasses.replace(sample, anchor="", response_text="")


def fmt_stats(stats: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()
    )
