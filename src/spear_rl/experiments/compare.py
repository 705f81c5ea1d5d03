"""`spear compare`: presets x seeds on one environment's recipes into one folder, one table and
overlaid curves.

A row is a preset (`spear`, the recipe ENV/spear), the frozen control (`frozen`), or a variant: a
preset with overrides of its own, `NAME=PRESET:key=value,key=value` (e.g.
`spear-noreplay=spear:replay.enabled=false`), whose runs are named after NAME.

Several processes may work through one folder at once (run the same command in each): a run is
taken under its lock (locking.py), so no run is done twice. A finished run (result.json) is
skipped, an interrupted one with a checkpoint (or its saved SFT warm start) continues with the
trainer's resume, and a run folder with neither starts again. runs.json (records.py) and the tables
are rewritten under the folder lock after every run, from every finished run in the folder.
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spear_rl.experiments.frozen import FROZEN, run_frozen
from spear_rl.experiments.locking import RUN_LOCK, RunBusy, lock_run
from spear_rl.experiments.plan import (
    NOT_COMPARED,
    PlannedRun,
    check_same_config,
    config_differences,
    nested,
    parse_row,
    plan_runs,
)
from spear_rl.experiments.records import (
    FAILED,
    FINISHED,
    finished_run_dirs,
    read_records,
    refreshed,
    summarise_run,
    update_records,
)
from spear_rl.experiments.tables import area_under_curve, mean_std, metric_curve
from spear_rl.train.checkpoint import SFT_POLICY_DIR, complete_checkpoints
from spear_rl.train.config import ConfigError, deep_merge
from spear_rl.train.metrics import write_text_atomic
from spear_rl.train.trainer import train

Echo = Callable[[str], None]


class RunsFailed(RuntimeError):
    """Some runs of a `compare` failed (each printed its traceback); the tables hold the rest."""


Records = dict[str, dict[str, Any]]


def run_planned(plan: list[PlannedRun], echo: Echo, commit: Callable[[Records], None]) -> list[str]:
    """Do every run of `plan` that no other process has done or is doing; `commit` gets each
    finished or failed run's record. Returns the names of the runs that failed here."""
    failed = []
    for run in plan:
        if (run.run_dir / "result.json").is_file():
            continue
        try:
            lock = lock_run(run.run_dir, echo)
        except RunBusy as busy:
            echo(f"=== {busy}: skipped here ===")
            continue
        with lock:
            if (run.run_dir / "result.json").is_file():  # finished while we waited for the lock
                continue
            try:
                resumed = execute(run, echo)
                record = {**summarise_run(run.run_dir), "resumed": resumed}
            except Exception as err:  # noqa: BLE001 - one broken run must not stop the others
                traceback.print_exc()
                echo(f"=== {run.run_dir.name} failed: {type(err).__name__}: {err} ===")
                failed.append(run.run_dir.name)
                record = {"preset": run.row.name, "seed": run.seed, "status": FAILED}
                record["error"] = f"{type(err).__name__}: {err}"
        commit(
            {run.run_dir.name: {**record, "recipe": run.row.recipe, "overrides": run.row.overrides}}
        )
    return failed


def execute(run: PlannedRun, echo: Echo) -> bool:
    """Resume the run from its checkpoint, or start it (again, if a start left no checkpoint);
    True if it resumed."""
    run_dir = run.run_dir
    label = f"{run.row.name} seed {run.seed}"
    resumable = complete_checkpoints(run_dir) or (run_dir / SFT_POLICY_DIR).is_dir()
    if resumable and run.row.name != FROZEN:
        check_same_config(run)
        changed = {
            k: b
            for k, (_, b) in config_differences(run_dir, run.cfg).items()
            if k in NOT_COMPARED and k not in ("train.output_dir", "train.run_name")
        }
        echo(f"=== {label}: resuming {run_dir} ===")
        train(resume=run_dir, resume_overrides=nested(changed) or None, echo=echo)
        return True
    leftovers = [p for p in run_dir.iterdir() if p.name != RUN_LOCK]
    if leftovers:
        echo(f"=== {label}: {run_dir} has no checkpoint to resume from; starting it again ===")
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    else:
        echo(f"=== {label} ===")
    if run.row.name == FROZEN:
        run_frozen(run.cfg, echo=echo)
    else:
        train(run.cfg, echo=echo)
    return False


def compare(
    env_recipes: str,
    presets: list[str],
    seeds: list[int],
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    echo: Echo = print,
    run: bool = True,
    extra_tables: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the rows (`presets`: presets, `frozen`, variant specs) x `seeds` into `out_dir` unless
    done, then write compare.json / .md / .png (and `extra_tables(report)`) from every finished
    run in the folder. `run=False` only rebuilds runs.json and the tables from what is on disk."""
    rows = [parse_row(p) for p in presets]
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ConfigError(f"a row name is given twice: {', '.join(names)}")
    order = names

    def write(records: Records) -> None:
        report = build_report(env_recipes, records, order)
        write_compare_tables(report, out_dir)
        if extra_tables is not None:
            extra_tables(report)

    if not run:
        found = refreshed(out_dir, finished_run_dirs(out_dir))
        return build_report(env_recipes, update_records(out_dir, found, write), order)
    # presets on one seed usually share the SFT warm start: do it once per seed
    if "cache_dir" not in (overrides or {}).get("sft", {}):
        overrides = deep_merge(overrides or {}, {"sft": {"cache_dir": str(out_dir / "sft_cache")}})
    plan = plan_runs(env_recipes, rows, seeds, out_dir, overrides or {})
    for planned in plan:
        check_same_config(planned)
    out_dir.mkdir(parents=True, exist_ok=True)
    known = read_records(out_dir)
    missing = [  # finished before runs.json knew them (an older version, or a kill in between)
        p.run_dir
        for p in plan
        if (p.run_dir / "result.json").is_file()
        and known.get(p.run_dir.name, {}).get("status") != FINISHED
    ]
    update_records(out_dir, refreshed(out_dir, missing), write)
    failed = run_planned(plan, echo, lambda change: update_records(out_dir, change, write))
    report = build_report(env_recipes, update_records(out_dir, {}, write), order)
    if failed:
        raise RunsFailed(
            f"{len(failed)} run(s) failed: {', '.join(failed)} (tracebacks above; errors in "
            f"{out_dir / 'runs.json'}); the tables hold the finished runs"
        )
    return report


def eval_curve(records: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, held-out success) of a run's evaluations."""
    return metric_curve(records, "eval/success_rate")


def build_report(env_recipes: str, records: Records, order: list[str]) -> dict[str, Any]:
    """The folder's finished runs by row (the given order first, then any other row found), each
    with its curve and summary numbers, and mean ± std per row."""
    finished = [(name, r) for name, r in records.items() if r.get("status") == FINISHED]
    presets = [p for p in order if any(r["preset"] == p for _, r in finished)]
    presets += sorted({r["preset"] for _, r in finished} - set(presets))
    runs = {
        preset: [
            run_summary(name, r)
            for name, r in sorted(finished, key=lambda item: item[1]["seed"])
            if r["preset"] == preset
        ]
        for preset in presets
    }
    table = {
        preset: {
            key: mean_std([r[key] for r in items])
            for key in ("final_success", "best_success", "auc_success", "wall_seconds")
        }
        for preset, items in runs.items()
    }
    seeds = sorted({r["seed"] for items in runs.values() for r in items})
    failed = sorted(name for name, r in records.items() if r.get("status") == FAILED)
    return {
        "env_recipes": env_recipes,
        "seeds": seeds,
        "table": table,
        "runs": runs,
        "failed": failed,
    }


def run_summary(name: str, record: dict[str, Any]) -> dict[str, Any]:
    steps = [s for s, _ in record["eval_success"]]
    success = [v for _, v in record["eval_success"]]
    late = record.get("late_train_success")
    return {
        "seed": record["seed"],
        "run_dir": name,
        "final_success": success[-1] if success else float("nan"),
        "best_success": max(success) if success else float("nan"),
        "auc_success": area_under_curve(steps, success),
        "late_train_success": float("nan") if late is None else late,
        "wall_seconds": record["wall_seconds"],  # a resumed run's: its last session only
        "resumed": record.get("resumed", False),
        "curve": {"steps": steps, "success": success},
    }


def write_compare_tables(report: dict[str, Any], out_dir: Path) -> None:
    write_text_atomic(out_dir / "compare.json", json.dumps(report, indent=2))
    write_text_atomic(out_dir / "compare.md", markdown_table(report["table"], report["runs"]))
    tmp = out_dir / ".compare.tmp.png"
    plot_mean_curves(report["runs"], tmp)
    tmp.replace(out_dir / "compare.png")


def markdown_table(
    table: dict[str, dict[str, tuple[float, float]]], runs: dict[str, list[dict[str, Any]]]
) -> str:
    lines = [
        "| preset | seeds | final success | best success | AUC success | wall time (s) |  (mean ± std over seeds)",
        "|---|---|---|---|---|---|",
    ]
    for preset, row in table.items():
        cells = [
            f"{m:.3f} ± {s:.3f}"
            for m, s in (row[k] for k in ("final_success", "best_success", "auc_success"))
        ]
        m, s = row["wall_seconds"]
        seeds = ",".join(f"{r['seed']}{'*' if r['resumed'] else ''}" for r in runs[preset])
        lines.append(f"| {preset} | {seeds} | " + " | ".join(cells) + f" | {m:.0f} ± {s:.0f} |")
    if any(r["resumed"] for items in runs.values() for r in items):
        lines.append("\n\\* resumed after an interruption: its wall time is the last session's")
    return "\n".join(lines) + "\n"


def plot_mean_curves(runs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for preset, items in runs.items():
        steps = items[0]["curve"]["steps"]
        curves = [r["curve"]["success"] for r in items if r["curve"]["steps"] == steps]
        if not steps or not curves:
            continue
        arr = np.array(curves)
        mean, std = arr.mean(0), arr.std(0)
        ax.plot(steps, mean, marker="o", ms=3, label=preset)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out success")
    ax.grid(alpha=0.3)
    if ax.lines:  # a folder with no finished run yet gets empty axes
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
