"""How long stepping ALFWorld takes per turn, inline vs worker processes vs Ray actors, and what share
of a rollout goes to the envs next to generation.

Part 1, env stepping: N episodes (ALFWorld, the `alfworld/spear` recipe's env) are reset and then
stepped for `--turns` rounds by a seeded scripted policy (mostly admissible actions, so the engine
does real work; some junk replies, as a policy writes). Reported per backend: seconds per round
(one `pool.step` over all live episodes), reset seconds, and the speed-up over inline. Every
backend reads the same games, generated once beforehand (the per-game generation cost, which a new
training task pays at its reset, is reported on its own).

Part 2, the share of a rollout: `run_rollout` with the recipe's tiny policy (untrained: only its
compute matters here) generating every turn, through each backend. The policy's tokens are then
replaced by an admissible action before the env sees them (a benchmark-only engine wrapper), so the
envs play real moves instead of the invalid turns an untrained policy writes. Reported: the
rollout's seconds split into generate / env / prompt / other, after an untimed warm-up rollout on
the same pool (workers start their engines once per run). Env time includes the resets (loading
the pre-generated games; add the generation cost per new game for fresh training tasks).

    python benchmarks/envpool.py                       # 64 and 256 episodes, all backends
    python benchmarks/envpool.py --episodes 64 --backends inline,process --turns 3

The numbers are wall-clock on whatever machine runs it; read them as ratios within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from spear_rl.envs.pool import EnvSpec, make_env_pool
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.generation import GenOutput
from spear_rl.rollout.runner import run_rollout
from spear_rl.train.config import load_config
from spear_rl.train.warm_start import build_policy

RECIPE = "alfworld/spear"
WARM_UP_SEED = 10_000
_ADMISSIBLE = re.compile(r"Admissible actions: (.+)")


def scripted_response(rng: random.Random, admissible: list[str] | None) -> str:
    if rng.random() < 0.1 or not admissible:
        return "I am not sure what to do"  # no action tags: an invalid turn
    return f"<think>next</think><action>{rng.choice(admissible)}</action>"


def time_env_stepping(
    backend: str, spec: EnvSpec, episodes: int, turns: int, workers: int
) -> dict[str, float]:
    t0 = time.perf_counter()
    pool = make_env_pool(
        backend, spec, timeout_s=60.0, num_workers=workers, cpus_per_worker=1.0, ray_address=""
    )
    started = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        calls = pool.reset(list(range(episodes)))
        reset_s = time.perf_counter() - t0
        views = {slot: c.view for slot, c in enumerate(calls) if c.ok}
        failures = [c.failure for c in calls if not c.ok]
        rngs = [random.Random(f"envpool-{slot}") for slot in range(episodes)]
        rounds, steps = [], 0
        for _ in range(turns):
            live = [s for s, v in sorted(views.items()) if not v.done]
            if not live:
                break
            responses = [scripted_response(rngs[s], views[s].admissible_actions) for s in live]
            t0 = time.perf_counter()
            calls = pool.step(live, responses)
            rounds.append(time.perf_counter() - t0)
            steps += len(live)
            for slot, call in zip(live, calls, strict=True):
                if call.ok:
                    views[slot] = call.view
                else:
                    failures.append(call.failure)
                    del views[slot]
        counters = pool.take_counters()
    finally:
        pool.close()
    return {
        "start_s": started,
        "reset_s": reset_s,
        "round_s_mean": statistics.fmean(rounds),
        "round_s_all": rounds,
        "ms_per_env_step": 1000 * sum(rounds) / max(1, steps),
        "env_steps": steps,
        "failures": counters["worker_failures"],
        "workers_replaced": counters["workers_replaced"],
        "failure_reasons": failures,
    }


class AdmissibleActionEngine:
    """Generates with the real engine (its cost is what is measured), then answers each prompt
    with one of the admissible actions the prompt lists, so the env plays real moves."""

    name = "hf+admissible"

    def __init__(self, inner: HFEngine, tokenizer, seed: int) -> None:
        self.inner, self.tokenizer, self.rng = inner, tokenizer, random.Random(seed)

    def generate(self, prompts, sampling, generator) -> list[GenOutput]:
        self.inner.generate(prompts, sampling, generator)
        outputs = []
        for prompt in prompts:
            found = _ADMISSIBLE.findall(self.tokenizer.decode(prompt, skip_special_tokens=True))
            admissible = found[-1].split(", ") if found else None
            text = scripted_response(self.rng, admissible)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            ids.append(sampling.stop_token_ids[0])
            outputs.append(GenOutput(ids, [0.0] * len(ids), False))
        return outputs


def time_rollout_share(
    backend: str, spec: EnvSpec, cfg, model, tokenizer, episodes: int, turns: int, workers: int
) -> dict[str, float]:
    rollout_cfg = dataclasses.replace(cfg.rollout, max_turns=turns)
    tasks = episodes // rollout_cfg.group_size
    engine = AdmissibleActionEngine(
        HFEngine(
            model,
            tokenizer.pad_token_id,
            rollout_cfg.generation_batch_size,
            rollout_cfg.kv_reuse,
        ),
        tokenizer,
        0,
    )
    with make_env_pool(
        backend, spec, timeout_s=60.0, num_workers=workers, cpus_per_worker=1.0, ray_address=""
    ) as pool:
        # untimed: workers import and start their engines once per run, not once per rollout
        warm_cfg = dataclasses.replace(rollout_cfg, max_turns=1)
        run_rollout(model, tokenizer, pool, [WARM_UP_SEED], warm_cfg, seed=1, engine=engine)
        result = run_rollout(
            model, tokenizer, pool, list(range(tasks)), rollout_cfg, seed=0, engine=engine
        )
    total = sum(result.timings.values())
    return {
        **{f"{k}_s": v for k, v in result.timings.items()},
        "total_s": total,
        "env_share": result.timings["env"] / total,
        "generate_share": result.timings["generate"] / total,
        "turns": sum(len(t.turns) for t in result.trajectories),
        "invalid_rate": result.stats["invalid_rate"],
    }


def summarise(rows: list[dict]) -> dict:
    """Medians over the repeats, plus every repeat's rows."""
    numeric = [k for k, v in rows[0].items() if isinstance(v, int | float)]
    out = {k: statistics.median(r[k] for r in rows) for k in numeric}
    out["repeats"] = rows
    return out


def print_table(results: dict, key: str, columns: list[str]) -> None:
    """One row per (episodes, backend): medians of `columns`, and inline's `key` over this one."""
    print(f"{'episodes':>8} {'backend':>8} " + " ".join(f"{c:>15}" for c in columns) + "  x inline")
    for n, by_backend in results.items():
        for backend, row in by_backend.items():
            ratio = by_backend["inline"][key] / row[key] if "inline" in by_backend else float("nan")
            row[f"inline_over_this_{key}"] = ratio
            cells = " ".join(f"{row[c]:>15.3f}" for c in columns)
            print(f"{n:>8} {backend:>8} {cells} {ratio:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", default="64,256")
    parser.add_argument("--backends", default="inline,process,ray")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; odd rounds run in reverse")
    parser.add_argument("--skip-rollout", action="store_true", help="part 1 only")
    parser.add_argument("--out", default="benchmarks/results/envpool")
    args = parser.parse_args()
    sizes = [int(n) for n in args.episodes.split(",")]
    backends = args.backends.split(",")
    torch.set_num_threads(args.threads)
    cfg = load_config(RECIPE, {"sft": {"episodes": 64}})
    summary: dict = {
        "recipe": RECIPE,
        "env_kwargs": cfg.env.kwargs,
        "turns": args.turns,
        "num_workers": args.workers,
        "torch_threads": args.threads,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "stepping": {},
        "rollout": {},
    }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        summary["load_average_now"] = os.getloadavg()
        (out / "summary.json").write_text(json.dumps(summary, indent=2))

    # Games are generated once, untimed, into one folder every backend reads: resets then time
    # loading and starting a game. A new game costs its generation on top (reported here).
    cache = tempfile.mkdtemp(prefix="envpool-games-")
    spec = EnvSpec(cfg.env.name, dict(cfg.env.kwargs, cache_dir=cache))
    games = spec()
    t0 = time.perf_counter()
    for seed in [*range(max(sizes)), WARM_UP_SEED]:
        games.game_file_for(seed)
    summary["game_generation_s_per_game"] = (time.perf_counter() - t0) / (max(sizes) + 1)
    games.close()
    print(f"generated {max(sizes) + 1} games: {summary['game_generation_s_per_game']:.3f} s each")

    runs = [
        backends if r % 2 == 0 else backends[::-1] for r in range(args.repeats)
    ]  # ABBA order: drift in the machine's load hits every backend alike
    print(f"part 1: ALFWorld env stepping, {args.turns} rounds, {args.workers} workers", flush=True)
    for n in sizes:
        rows: dict[str, list] = {b: [] for b in backends}
        for order in runs:
            for backend in order:
                row = time_env_stepping(backend, spec, n, args.turns, args.workers)
                rows[backend].append(row)
                print(f"  {n} episodes, {backend}: {row['round_s_mean']:.3f} s/round", flush=True)
        summary["stepping"][n] = {b: summarise(rows[b]) for b in backends}
        save()
    print_table(summary["stepping"], "round_s_mean", ["round_s_mean", "ms_per_env_step", "reset_s"])
    save()

    if not args.skip_rollout:
        model, tokenizer = build_policy(cfg, EnvSpec(cfg.env.name, dict(cfg.env.kwargs)), None)
        model.eval()
        time_rollout_share("inline", spec, cfg, model, tokenizer, 8, 1, 1)  # warm-up, unreported
        print(f"\npart 2: a rollout of {args.turns} turns, the tiny policy generating", flush=True)
        for n in sizes:
            rows = {b: [] for b in backends}
            for order in runs:
                for backend in order:
                    row = time_rollout_share(
                        backend, spec, cfg, model, tokenizer, n, args.turns, args.workers
                    )
                    rows[backend].append(row)
                    print(
                        f"  {n} episodes, {backend}: env share {row['env_share']:.2f}", flush=True
                    )
            summary["rollout"][n] = {b: summarise(rows[b]) for b in backends}
            save()
        print_table(summary["rollout"], "env_s", ["total_s", "generate_s", "env_s", "env_share"])
    save()
    print(f"\nwrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
