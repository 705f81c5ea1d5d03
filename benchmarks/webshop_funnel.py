"""Where do a WebShop policy's episodes fail? A per-stage funnel on held-out tasks.

Evaluates the SFT start of a recipe (from `--sft.cache_dir`, or trained here) and any checkpoints
of a run of that recipe on the same held-out seeds, and prints, for each policy, the share of
episodes that searched, had a product scoring 1.0 on a results page, opened one, clicked all its
goal options, bought anything, and won; the first query's recall of the instruction's words; the
mean purchase score; where the invalid turns happened; and which listed product the policy
tried to open first (the top result, another, or an id the page does not show).

    python benchmarks/webshop_funnel.py --recipe webshop/spear --sft.cache_dir=DIR \
        --checkpoints RUN/checkpoints/step_000010,RUN/checkpoints/step_000030
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spear_rl.experiments.webshop_funnel import STAGES, checkpoint_label, funnel_summary
from spear_rl.train.config import load_config, parse_overrides
from spear_rl.train.evaluate import evaluate_policy
from spear_rl.train.runtime import make_env_factory, set_threads
from spear_rl.train.warm_start import build_policy, initial_policy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="webshop/spear")
    parser.add_argument("--episodes", type=int, default=48, help="held-out evaluation episodes")
    parser.add_argument(
        "--checkpoints", default="", help="comma-separated checkpoint folders of a run"
    )
    parser.add_argument("--no-sft", action="store_true", help="skip the SFT start's row")
    parser.add_argument("--out", default="benchmarks/results/webshop_funnel.json")
    args, rest = parser.parse_known_args()
    cfg = load_config(args.recipe, parse_overrides(rest))
    if not cfg.env.name.startswith("webshop"):
        parser.error(f"{args.recipe} is not a WebShop recipe (env {cfg.env.name!r})")
    set_threads(cfg)
    env_factory = make_env_factory(cfg)
    policies = [] if args.no_sft else [("SFT start", None)]
    for path in filter(None, args.checkpoints.split(",")):
        if not (Path(path) / "model").is_dir():
            parser.error(f"{path} is not a checkpoint folder (no model/ inside)")
        policies.append((checkpoint_label(Path(path)), Path(path)))
    if not policies:
        parser.error("nothing to evaluate: give --checkpoints or drop --no-sft")

    rows = []
    for name, checkpoint in policies:
        if checkpoint is None:
            model, tokenizer, _ = initial_policy(cfg, env_factory)
        else:
            model, tokenizer = build_policy(cfg, None, checkpoint)
        metrics, trajectories = evaluate_policy(
            model, tokenizer, env_factory, cfg.rollout, args.episodes, seed=cfg.train.seed
        )
        summary = funnel_summary(env_factory, trajectories)
        rows.append({"policy": name, "invalid_rate": metrics["eval/invalid_rate"], **summary})
        print(f"{name}: done ({args.episodes} episodes)", flush=True)

    print(f"\nWebShop funnel, {args.recipe}, {args.episodes} held-out episodes\n")
    print("| policy | " + " | ".join(STAGES) + " | first-query recall | purchase score |")
    print("|---" * (len(STAGES) + 3) + "|")
    for row in rows:
        shares = " | ".join(f"{row[s]:.2f}" for s in STAGES)
        recall, score = row["first_query_recall"], row["purchase_score"]
        print(
            f"| {row['policy']} | {shares} | {'—' if recall is None else f'{recall:.2f}'} | "
            f"{'—' if score is None else f'{score:.2f}'} |"
        )
    for row in rows:
        pages = ", ".join(f"{k} {v}" for k, v in row["invalid_turns_by_page"].items())
        won = round(row["won"] * args.episodes)
        print(
            f"\n{row['policy']}: won {won}/{args.episodes}; invalid turns"
            f" {row['invalid_rate']:.0%} ({pages or 'none'})"
        )
        print(
            f"  first product click on a results page: the top result {_share(row['first_pick_top'])},"
            f" an id not on the page {_share(row['first_pick_unlisted'])}; the first search's top"
            f" result satisfies the goal in {_share(row['top_result_good'])} of episodes"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recipe": args.recipe, "rows": rows}, indent=2))
    print(f"\nJSON: {out}")


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    main()
