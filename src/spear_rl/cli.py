"""The `spear` command: train | eval | compare | plot | recipes (alone, it prints this help).

Config overrides follow `train`'s and `compare`'s own options as `--section.key=value`.
Errors a person can act on are printed as one line (exit code 2), not a traceback; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class UsageError(Exception):
    """A command line that cannot work as given (e.g. --resume together with --recipe)."""


def usage_errors() -> tuple[type[BaseException], ...]:
    """The errors a person caused and can fix, printed as one line (exit code 2): a bad config or
    recipe, a missing or unusable file or run folder, a missing optional extra, an unknown registry
    name. Anything else is a bug and keeps its traceback; SPEAR_DEBUG=1 shows tracebacks for these
    too. Imported here, not at module level, so that `spear --help` stays fast."""
    from spear_rl.envs.alfworld._deps import AlfWorldMissingError
    from spear_rl.envs.math_tool.data import MathDataError
    from spear_rl.envs.math_tool.isolation import SandboxUnavailableError
    from spear_rl.envs.resolve import EnvLoadError
    from spear_rl.envs.webshop.search import MissingDependencyError
    from spear_rl.models.loading import ModelLoadError
    from spear_rl.registry import UnknownNameError
    from spear_rl.train.checkpoint import RunFolderError
    from spear_rl.train.config import ConfigError
    from spear_rl.train.metrics import MissingExtraError

    return (
        UsageError,
        ConfigError,
        RunFolderError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        ModuleNotFoundError,
        AlfWorldMissingError,
        MissingDependencyError,
        MathDataError,
        SandboxUnavailableError,
        EnvLoadError,
        UnknownNameError,
        MissingExtraError,
        ModelLoadError,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spear", description="SPEAR: agentic RL for LLM agents")
    sub = parser.add_subparsers(dest="command", required=False)

    p = sub.add_parser(
        "train",
        help="train an agent from a recipe (default: SPEAR, SmolLM2-135M on arithmetic with a "
        "calculator tool, CPU)",
    )
    p.add_argument(
        "--recipe", default=None, help="a recipe name (see `spear recipes`) or a YAML path"
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue a run from its latest checkpoint",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.epilog = (
        "Config overrides: --section.key=value, with sections model, env, rollout, algo, replay, "
        "sft, train, log (e.g. --train.steps=10 --algo.loss=vanilla --replay.enabled=false). "
        "Every key, its default, allowed values and meaning: docs/config.md; the resolved config "
        "of a recipe: --print-config."
    )

    p = sub.add_parser("eval", help="success rate of a saved policy on held-out tasks")
    p.add_argument("run_dir", help="a run folder (its latest checkpoint) or a checkpoint folder")
    p.add_argument("--episodes", type=int, default=None)
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="sampling seed (default: the one the run evaluated this step with, so they agree)",
    )

    p = sub.add_parser("compare", help="presets x seeds on one environment; table and curves")
    p.add_argument("--env", default="sokoban", help="recipe folder: sokoban, alfworld, ...")
    p.add_argument(
        "--presets",
        default="grpo,drbot,spear",
        help="recipe names in that folder; 'frozen' adds the warm start evaluated at the same "
        "steps with the same seeds, never trained (how far a curve moves by sampling alone)",
    )
    p.add_argument("--seeds", default=[0, 1, 2], type=_seed_list, help="e.g. 0,1,2")
    p.add_argument("--out", default="runs/compare")
    p.epilog = "Config overrides (--section.key=value) apply to every run, as in `spear train`."

    p = sub.add_parser("plot", help="PNG curves of one or more runs, overlaid")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default=None, help="PNG path (default: <first run>/curves.png)")

    sub.add_parser("recipes", help="list the built-in recipes")
    return parser


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers like 0,1,2, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    from spear_rl.train.threads import spin_briefly

    spin_briefly()  # before anything imports torch: its OpenMP reads the policy once, at load
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:  # `spear` alone: say what it can do rather than start a long run
        parser.print_help()
        if rest:
            print(f"\nspear: choose a command (e.g. spear train {' '.join(rest)})", file=sys.stderr)
        return 2 if rest else 0
    try:
        return dispatch(args, rest, parser)
    except KeyboardInterrupt as err:
        # a training run says where it stopped and from which step it resumes (interrupt.py)
        print(str(err) or "interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, usage_errors()) or os.environ.get("SPEAR_DEBUG"):
            raise
        print(f"spear {args.command}: error: {err}", file=sys.stderr)
        return 2


def dispatch(args: argparse.Namespace, rest: list[str], parser: argparse.ArgumentParser) -> int:
    from spear_rl.train.config import load_config, parse_overrides

    overrides = parse_overrides(rest)
    if args.command == "train":
        return cmd_train(args, overrides, load_config)
    if args.command == "compare":  # the same config overrides as `spear train`, for every run
        from spear_rl.experiments.compare import compare

        report = compare(args.env, args.presets.split(","), args.seeds, Path(args.out), overrides)
        print((Path(args.out) / "compare.md").read_text())
        print(f"runs, compare.json and compare.png in {args.out} ({len(report['runs'])} presets)")
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "eval":
        return cmd_eval(args)
    if args.command == "plot":
        from spear_rl.train.plot import plot_runs

        dirs = [Path(d) for d in args.run_dirs]
        out = plot_runs(dirs, Path(args.out) if args.out else dirs[0] / "curves.png")
        print(f"wrote {out}")
        return 0
    if args.command == "recipes":
        from spear_rl.train.config import DEFAULT_RECIPE, list_recipes

        for name in list_recipes():
            print(f"{name}  (the default)" if name == DEFAULT_RECIPE else name)
        return 0
    parser.print_help()
    return 2


def cmd_train(args: argparse.Namespace, overrides: dict, load_config) -> int:
    from spear_rl.train.distributed import launcher_env
    from spear_rl.train.plot import plot_runs
    from spear_rl.train.trainer import train

    if args.resume:
        if args.recipe:
            raise UsageError("--resume continues a run with its saved config; drop --recipe")
        if overrides:
            print(f"resuming with overrides on the saved config: {overrides}", file=sys.stderr)
        result = train(resume=args.resume, resume_overrides=overrides)
    else:
        cfg = load_config(args.recipe, overrides)
        if args.print_config:
            print(cfg.to_yaml())
            return 0
        result = train(cfg)  # the resolved config is saved as RUN_DIR/config.yaml
    if launcher_env()[0] != 0:
        return 0
    curves = plot_runs([result.run_dir], result.run_dir / "curves.png")
    print(
        f"\n{result.change_line()}\n"
        f"wall time: {result.wall_seconds / 60:.1f} min\n"
        f"run folder: {result.run_dir}\n  curves: {curves}\n"
        f"  checkpoint: {result.run_dir / 'checkpoints'}\n  metrics: {result.run_dir / 'metrics.jsonl'}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import math

    from spear_rl.train.checkpoint import checkpoint_step, latest_checkpoint
    from spear_rl.train.evaluate import evaluate_policy
    from spear_rl.train.metrics import read_metrics
    from spear_rl.train.run_dir import load_run_config
    from spear_rl.train.runtime import derive_seed, make_env_factory, pick_device
    from spear_rl.train.warm_start import build_policy

    path = Path(args.run_dir)
    run_dir, checkpoint = (
        (path, latest_checkpoint(path))
        if (path / "config.yaml").exists()
        else (path.parent.parent, path)
    )
    if checkpoint is None or not (checkpoint / "model").is_dir():
        raise FileNotFoundError(f"no checkpoint found under {path}")
    cfg = load_run_config(run_dir)
    step = checkpoint_step(checkpoint)
    # by default the run's own sampling seed and episodes for this step: the same number it logged
    seed = derive_seed(cfg.train.seed, step, "eval") if args.seed is None else args.seed
    episodes = args.episodes or cfg.train.eval_episodes

    model, tokenizer = build_policy(cfg, None, checkpoint)
    model.to(pick_device(cfg.train.device))
    metrics, _ = evaluate_policy(
        model, tokenizer, make_env_factory(cfg), cfg.rollout, episodes, seed=seed
    )
    rate = metrics["eval/success_rate"]
    stderr = math.sqrt(rate * (1 - rate) / episodes)  # of the success rate, over these episodes
    print(
        f"{checkpoint}: held-out success {rate:.3f} ± {stderr:.3f} (standard error) over "
        f"{episodes} episodes, sampling seed {seed}"
    )
    logged = [
        r["eval/success_rate"]
        for r in read_metrics(run_dir, warn=False)
        if r["step"] == step and "eval/success_rate" in r
    ]
    if logged:
        same = args.seed is None and episodes == cfg.train.eval_episodes
        note = "same episodes and seed" if same else "other episodes or seed: expect a difference"
        print(f"  the run's own evaluation at step {step}: {logged[-1]:.3f} ({note})")
    for key, value in metrics.items():
        print(f"  {key}: {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
