"""Does SPEAR learn faster? Every preset x seed on each environment, same step budget and task sets.

For each environment it runs the rows through `spear_rl.experiments.compare.compare` into
OUT/ENV/, then writes OUT/ENV/learning.md and learning.json: per row the mean ± std over seeds of
final held-out success, area under the held-out curve (a mean success) and the steps to reach half
of the best method's final success; against each --baseline, the three differences paired by seed
(mean ± std, and on how many seeds the sign holds); plus overlaid curves (compare.png).

    python benchmarks/learning.py --envs sokoban --presets grpo,drbot,spear,frozen --seeds 0,1,2
    python benchmarks/learning.py --envs math --presets grpo,spear --baseline grpo,frozen \\
        --variants "spear-noreplay=spear:replay.enabled=false" \\
                   "spear-notool=spear:algo.toolcall_schedule=none"
    python benchmarks/learning.py --envs sokoban --out DIR --tables-only   # tables from disk only

A variant NAME=PRESET:key=value,key=value is PRESET with its own overrides; its runs and row are
named NAME. `frozen` (the warm start, evaluated at the same steps with the same seeds, never
trained) shows what sampling alone moves; give it as a baseline for "minus frozen".

Resumable and parallel: start the same command several times (e.g. in the background) and the
processes share out the runs, each run under a lock; a finished run is skipped, an interrupted one
continues from its checkpoint (keep train.checkpoint_every above 0), one without a checkpoint
starts again. The tables are rewritten after every run from all finished runs in the folder.
Exit status 1 if a run failed (the others still run).

Held-out success is measured on evaluation seeds the training never draws; nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spear_rl.experiments.compare import RunsFailed, compare
from spear_rl.experiments.learning import jsonable, learning_markdown, learning_summary
from spear_rl.experiments.plan import parse_row
from spear_rl.experiments.records import read_records
from spear_rl.train.config import ConfigError, deep_merge, parse_overrides
from spear_rl.train.metrics import write_text_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="sokoban")
    parser.add_argument("--presets", default="grpo,drbot,spear", help="comma-separated; may be ''")
    parser.add_argument(
        "--variants", nargs="*", default=[], help="rows NAME=PRESET:key=value,key=value"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--baseline", default="grpo", help="comma-separated rows to pair the others against"
    )
    parser.add_argument("--out", default="benchmarks/results/learning")
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="run nothing: rebuild runs.json and the tables from the run folders on disk",
    )
    args, rest = parser.parse_known_args(argv)
    overrides = deep_merge(parse_overrides(rest), {"log": {"progress": False}})
    specs = [p for p in args.presets.split(",") if p] + args.variants
    try:
        names = [parse_row(spec).name for spec in specs]
    except ConfigError as err:
        parser.error(str(err))
    baselines = args.baseline.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    failed_envs = []
    for env in args.envs.split(","):
        env_dir = out / env
        known = names + [r["preset"] for r in read_records(env_dir).values()]
        missing = [b for b in baselines if b not in known]
        if missing:
            parser.error(
                f"--baseline {','.join(missing)} is not among the rows ({','.join(names)}) "
                f"nor in {env_dir / 'runs.json'}"
            )
        title = f"{env} (curves: {env_dir / 'compare.png'})"

        def write_learning(report: dict[str, Any], title: str = title, env_dir: Path = env_dir):
            summary = learning_summary(report, baselines)
            write_text_atomic(env_dir / "learning.md", learning_markdown(summary, title))
            text = json.dumps(jsonable(summary), indent=2)
            write_text_atomic(env_dir / "learning.json", text)

        try:
            compare(
                env,
                specs,
                seeds,
                env_dir,
                overrides,
                echo=lambda line: print(line, flush=True),
                run=not args.tables_only,
                extra_tables=write_learning,
            )
        except RunsFailed as err:  # printed; the tables hold the other runs
            print(f"{env}: {err}", file=sys.stderr, flush=True)
            failed_envs.append(env)
        if (env_dir / "learning.md").is_file():
            print((env_dir / "learning.md").read_text(), flush=True)
            print(f"wrote {env_dir / 'learning.md'} and learning.json", flush=True)
    return 1 if failed_envs else 0


def cli(argv: list[str] | None = None) -> int:
    """main(), with the errors a person can fix (bad override, a folder of another config) as one
    line, as `spear` prints them."""
    from spear_rl.cli import usage_errors

    try:
        return main(argv)
    except usage_errors() as err:
        print(f"learning.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a training run says from which step it resumes
        print(str(err) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
