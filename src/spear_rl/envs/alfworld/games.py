"""Write generated ALFWorld games to a folder: `python -m spear_rl.envs.alfworld.games OUT N`.

The files are ordinary ALFWorld `.tw-pddl` games, so any ALFWorld tooling (and AlfWorldEnv's
`game_files`) can play them. Names sort in seed order.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from spear_rl.envs.alfworld.generate import (
    DEFAULT_NUM_DISTRACTORS,
    DEFAULT_NUM_RECEPTACLES,
    generate_task,
    write_game,
)


def write_games(
    directory: str | os.PathLike,
    n: int,
    *,
    start_seed: int = 0,
    task_type: str | Sequence[str] | None = None,
    num_receptacles: int = DEFAULT_NUM_RECEPTACLES,
    num_distractors: int = DEFAULT_NUM_DISTRACTORS,
) -> list[Path]:
    """Generate the tasks of seeds start_seed .. start_seed+n-1 and write one game file each,
    named `<seed:08d>-<task_type>.tw-pddl`. Returns the paths in seed order."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    folder = Path(directory)
    paths = []
    for seed in range(start_seed, start_seed + n):
        task = generate_task(
            seed, task_type, num_receptacles=num_receptacles, num_distractors=num_distractors
        )
        paths.append(write_game(task, folder / f"{seed:08d}-{task['task_type']}.tw-pddl"))
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write generated ALFWorld games (.tw-pddl).")
    parser.add_argument("directory")
    parser.add_argument("n", type=int)
    parser.add_argument("--start-seed", type=int, default=0)
    parser.add_argument("--task-type", action="append", help="repeat to allow several")
    parser.add_argument("--num-receptacles", type=int, default=DEFAULT_NUM_RECEPTACLES)
    parser.add_argument("--num-distractors", type=int, default=DEFAULT_NUM_DISTRACTORS)
    args = parser.parse_args(argv)
    try:
        paths = write_games(
            args.directory,
            args.n,
            start_seed=args.start_seed,
            task_type=args.task_type,
            num_receptacles=args.num_receptacles,
            num_distractors=args.num_distractors,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {len(paths)} games to {args.directory}")


if __name__ == "__main__":
    main()
