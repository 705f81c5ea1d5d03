"""How long does loading the default's model take, before and after the GGUF conversion cache?

Every load runs in a fresh process: `load_policy(ModelConfig(name_or_path="smollm2"))` from the
`src/` of `--old` (which converts the GGUF file on every load) and of `--new`, the latter twice
per round: on an empty cache (a first run: convert, save, read back) and on the cache that load
warmed. Rounds alternate the order of old and new (this machine drifts). Reports the import and
load seconds of each, medians with ranges, and checks that all three loads give the same weights.

    python benchmarks/model_load.py --old cd43c65 --new HEAD [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from spear_rl.experiments.git_refs import export_src
from spear_rl.experiments.interleaved import spread

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "model_load.json"

# the child: time the import and the load, and fingerprint the weights (a sum per tensor)
CHILD = """
import json, time
started = time.perf_counter()
import torch
from spear_rl.models import ModelConfig, load_policy
imported = time.perf_counter()
model, tokenizer = load_policy(ModelConfig(name_or_path="smollm2"))
loaded = time.perf_counter()
sums = {k: float(v.double().sum()) for k, v in model.state_dict().items()}
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                  "weights": sums, "vocab": len(tokenizer)}))
"""


def load_once(src: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "SPEAR_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"load from {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", default="cd43c65", help="git ref without the conversion cache")
    parser.add_argument("--new", default="HEAD", help="git ref to compare (committed code)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arms = ("old", "new, first load", "new, cached")
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shas = {ref: export_src(getattr(args, ref), tmp / ref, ROOT) for ref in ("old", "new")}
        for rnd in range(args.rounds):
            cache = tmp / f"cache-{rnd}"  # empty at each round's first new load
            order = arms if rnd % 2 == 0 else arms[1:] + arms[:1]
            for arm in order:
                src = tmp / ("old" if arm == "old" else "new") / "src"
                record = load_once(src, tmp / "none" if arm == "old" else cache)
                runs[arm].append(record)
                print(
                    f"round {rnd + 1}/{args.rounds}  {arm:16}  import {record['import_s']:5.1f} s"
                    f"  load {record['load_s']:5.1f} s",
                    flush=True,
                )
    reference = runs["old"][0]["weights"]
    same = all(r["weights"] == reference for arm in arms for r in runs[arm])

    summary = {
        "refs": shas,
        "rounds": args.rounds,
        "same_weights": same,
        "arms": {
            arm: {k: spread([r[k] for r in runs[arm]]) for k in ("import_s", "load_s")}
            for arm in arms
        },
        "runs": {
            arm: [{k: r[k] for k in ("import_s", "load_s")} for r in runs[arm]] for arm in arms
        },
    }
    old = summary["arms"]["old"]["load_s"]["median"]
    print(f"\n{'':16} {'load s (range)':>20} {'old / this':>11} {'import s':>9}")
    for arm in arms:
        load, imp = summary["arms"][arm]["load_s"], summary["arms"][arm]["import_s"]
        span = f"{load['median']:.2f} ({load['min']:.2f}-{load['max']:.2f})"
        print(f"{arm:16} {span:>20} {old / load['median']:10.1f}x {imp['median']:9.1f}")
    print(f"same weights from all loads: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
