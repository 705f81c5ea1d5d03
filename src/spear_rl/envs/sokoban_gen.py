"""Sokoban rooms: the state, its text rendering, the move rule, a BFS solver and a seeded generator.

Pure Python, no RNG other than the `random.Random(seed)` passed around, so a room is a pure function
of (seed, size, num_boxes, gen_steps, min_solution_moves). Rooms are solvable by construction (boxes
start on their targets and are *pulled* away by reverse play); the solver then proves it and gives
an optimal (fewest moves) plan.
"""

from __future__ import annotations

import operator
import random
from collections import deque
from dataclasses import dataclass

Cell = tuple[int, int]  # (row, col)

# Direction name -> (d_row, d_col). Order is the order of admissible actions.
MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

# Plain ASCII so that byte-level tokenizers see one byte per cell.
WALL = "#"
FLOOR = "_"
TARGET = "O"
BOX = "X"
BOX_ON_TARGET = "*"
PLAYER = "P"
PLAYER_ON_TARGET = "S"
LEGEND = (
    f"{WALL} wall, {FLOOR} floor, {TARGET} target, {BOX} box, {BOX_ON_TARGET} box on target, "
    f"{PLAYER} you (the player), {PLAYER_ON_TARGET} you standing on a target"
)

# Solver budget: beyond this many visited states `solve` gives up (returns None). Default rooms
# (6x6, one box) have at most a few hundred states.
DEFAULT_MAX_SOLVER_STATES = 200_000
# Generation gives up (with an error naming the settings) after this many rejected rooms.
MAX_GENERATION_ATTEMPTS = 1_000


@dataclass(frozen=True)
class SokobanState:
    """A full game state. Cells outside the `height` x `width` grid count as walls."""

    height: int
    width: int
    walls: frozenset[Cell]
    targets: frozenset[Cell]
    boxes: frozenset[Cell]
    player: Cell

    @property
    def solved(self) -> bool:
        return self.boxes <= self.targets

    @property
    def boxes_on_targets(self) -> int:
        return len(self.boxes & self.targets)

    def is_free(self, cell: Cell) -> bool:
        """A cell the player or a box may enter: inside the grid, not a wall, no box."""
        return self.is_floor(cell) and cell not in self.boxes

    def is_floor(self, cell: Cell) -> bool:
        row, col = cell
        return 0 <= row < self.height and 0 <= col < self.width and cell not in self.walls


def apply_move(state: SokobanState, direction: str) -> SokobanState:
    """The state after the player tries to move in `direction` (a key of MOVES).

    Walking into a wall, or pushing a box into a wall or another box, leaves the state unchanged.
    """
    d_row, d_col = MOVES[direction]
    row, col = state.player
    ahead = (row + d_row, col + d_col)
    if not state.is_floor(ahead):
        return state
    if ahead not in state.boxes:
        return SokobanState(
            state.height, state.width, state.walls, state.targets, state.boxes, ahead
        )
    beyond = (ahead[0] + d_row, ahead[1] + d_col)
    if not state.is_free(beyond):
        return state
    boxes = (state.boxes - {ahead}) | {beyond}
    return SokobanState(state.height, state.width, state.walls, state.targets, boxes, ahead)


# ---- text ------------------------------------------------------------------------------------
def render(state: SokobanState) -> str:
    """The grid as text, one line per row, symbols as in LEGEND. A pure function of the state."""
    lines = []
    for row in range(state.height):
        chars = []
        for col in range(state.width):
            cell = (row, col)
            on_target = cell in state.targets
            if cell in state.walls:
                chars.append(WALL)
            elif cell == state.player:
                chars.append(PLAYER_ON_TARGET if on_target else PLAYER)
            elif cell in state.boxes:
                chars.append(BOX_ON_TARGET if on_target else BOX)
            else:
                chars.append(TARGET if on_target else FLOOR)
        lines.append("".join(chars))
    return "\n".join(lines)


def parse_room(text: str) -> SokobanState:
    """Inverse of `render`: build a state from a grid drawn with the LEGEND symbols.

    Blank leading/trailing lines and surrounding spaces are ignored; rows must have equal length,
    there must be exactly one player and as many targets as boxes (at least one).
    """
    rows = [line.strip() for line in text.strip().splitlines()]
    if not rows or any(len(line) != len(rows[0]) for line in rows):
        raise ValueError("room text must be a non-empty rectangle of equal-length rows")
    walls, targets, boxes, players = set(), set(), set(), []
    for row, line in enumerate(rows):
        for col, char in enumerate(line):
            cell = (row, col)
            if char == WALL:
                walls.add(cell)
            elif char in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                targets.add(cell)
            elif char != FLOOR and char not in (BOX, PLAYER):
                raise ValueError(
                    f"unknown symbol {char!r} at row {row}, col {col}; legend: {LEGEND}"
                )
            if char in (BOX, BOX_ON_TARGET):
                boxes.add(cell)
            if char in (PLAYER, PLAYER_ON_TARGET):
                players.append(cell)
    if len(players) != 1:
        raise ValueError(f"a room needs exactly one player, found {len(players)}")
    if not boxes or len(boxes) != len(targets):
        raise ValueError(
            f"a room needs as many targets as boxes (>= 1): {len(boxes)} boxes, {len(targets)} targets"
        )
    return SokobanState(
        len(rows), len(rows[0]), frozenset(walls), frozenset(targets), frozenset(boxes), players[0]
    )


# ---- solver ----------------------------------------------------------------------------------
def solve(state: SokobanState, max_states: int = DEFAULT_MAX_SOLVER_STATES) -> list[str] | None:
    """An optimal (fewest moves) list of directions that puts every box on a target.

    Returns [] for a solved state and None when the state is unsolvable (a deadlock) or needs more
    than `max_states` visited states to prove solvable. Breadth-first search over (player, boxes);
    boxes pushed onto "dead" cells (from which no target can ever be reached) are pruned, which never
    removes a solution.
    """
    if state.solved:
        return []
    width = state.width
    cells = [(r, c) for r in range(state.height) for c in range(width) if state.is_floor((r, c))]
    index = {cell: i for i, cell in enumerate(cells)}
    # neighbour[i][k]: the cell index one step from cell i in direction k, -1 for a wall
    directions = list(MOVES)
    neighbour = [[index.get((r + dr, c + dc), -1) for dr, dc in MOVES.values()] for (r, c) in cells]
    live = _live_cells(neighbour, [index[t] for t in state.targets])
    targets = frozenset(index[t] for t in state.targets)

    start = (index[state.player], tuple(sorted(index[b] for b in state.boxes)))
    parent: dict[tuple[int, tuple[int, ...]], tuple[tuple[int, tuple[int, ...]], int] | None] = {
        start: None
    }
    queue = deque([start])
    while queue:
        current = queue.popleft()
        player, boxes = current
        for k in range(4):
            ahead = neighbour[player][k]
            if ahead < 0:
                continue
            if ahead in boxes:
                beyond = neighbour[ahead][k]
                if beyond < 0 or beyond in boxes or not live[beyond]:
                    continue
                new_boxes = tuple(sorted(beyond if b == ahead else b for b in boxes))
            else:
                new_boxes = boxes
            nxt = (ahead, new_boxes)
            if nxt in parent:
                continue
            parent[nxt] = (current, k)
            if new_boxes is not boxes and targets.issuperset(new_boxes):
                return _backtrack(parent, nxt, directions)
            if len(parent) > max_states:
                return None
            queue.append(nxt)
    return None


def _live_cells(neighbour: list[list[int]], targets: list[int]) -> list[bool]:
    """Cells from which a box can still reach some target: those a box can be pulled to from one."""
    live = [False] * len(neighbour)
    queue = deque(targets)
    for t in targets:
        live[t] = True
    while queue:
        box = queue.popleft()
        for k in range(4):
            # pulling the box one cell in direction k needs the player there and one cell further
            to = neighbour[box][k]
            if to >= 0 and neighbour[to][k] >= 0 and not live[to]:
                live[to] = True
                queue.append(to)
    return live


def _backtrack(parent: dict, state: tuple, directions: list[str]) -> list[str]:
    plan = []
    while parent[state] is not None:
        state, k = parent[state]
        plan.append(directions[k])
    return plan[::-1]


# ---- generation ------------------------------------------------------------------------------
# Room shape: a random walk of WALK_STEPS_PER_SIDE * size steps carves the floor; it turns with
# probability TURN_PROBABILITY per step and widens its stroke sideways with WIDEN_PROBABILITY.
WALK_STEPS_PER_SIDE = 3
TURN_PROBABILITY = 0.35
WIDEN_PROBABILITY = 0.5
# Default difficulty floor: random play wins about half of the 1-3 move rooms (measured), but
# only about one in seven rooms that need 4 or more moves.
DEFAULT_MIN_SOLUTION_MOVES = 4
MIN_ROOM_SIZE, MAX_ROOM_SIZE = 5, 20  # a 3x3 interior is the smallest where a box can be pushed


@dataclass(frozen=True)
class SokobanPuzzle:
    """A generated room and an optimal plan that solves it."""

    state: SokobanState
    solution: tuple[str, ...]


def check_room_settings(size: int, num_boxes: int, gen_steps: int, min_solution_moves: int) -> None:
    """Raise a ValueError naming the setting when generation settings are out of range."""
    if not isinstance(size, int) or not MIN_ROOM_SIZE <= size <= MAX_ROOM_SIZE:
        raise ValueError(
            f"sokoban size must be an int in [{MIN_ROOM_SIZE}, {MAX_ROOM_SIZE}] (walls included), "
            f"got {size!r}"
        )
    max_boxes = (size - 2) ** 2 // 4
    if not isinstance(num_boxes, int) or not 1 <= num_boxes <= max_boxes:
        raise ValueError(
            f"sokoban num_boxes must be an int in [1, {max_boxes}] for size={size}, got {num_boxes!r}"
        )
    if not isinstance(gen_steps, int) or gen_steps < 1:
        raise ValueError(f"sokoban gen_steps must be a positive int, got {gen_steps!r}")
    if not isinstance(min_solution_moves, int) or min_solution_moves < 1:
        raise ValueError(
            f"sokoban min_solution_moves must be a positive int, got {min_solution_moves!r}"
        )


def generate_puzzle(
    seed: int,
    size: int = 6,
    num_boxes: int = 1,
    gen_steps: int = 30,
    min_solution_moves: int = DEFAULT_MIN_SOLUTION_MOVES,
) -> SokobanPuzzle:
    """A solvable `size` x `size` room (walls included), built deterministically from `seed`.

    Each try carves a room, puts the boxes on their targets and pulls them away by `gen_steps`
    moves of reverse play. Rooms whose optimal plan (proved by `solve`) is shorter than
    `min_solution_moves`, or that the solver cannot prove solvable within its budget, are rejected
    and the next try is drawn from the same seeded stream.
    """
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"sokoban seed must be an integer, got {seed!r}") from None
    check_room_settings(size, num_boxes, gen_steps, min_solution_moves)
    rng = random.Random(seed)
    for _ in range(MAX_GENERATION_ATTEMPTS):
        state = _reverse_played_room(rng, size, num_boxes, gen_steps)
        if state is None or state.solved:
            continue
        plan = solve(state)
        if plan is not None and len(plan) >= min_solution_moves:
            return SokobanPuzzle(state, tuple(plan))
    raise RuntimeError(
        f"could not generate a Sokoban room in {MAX_GENERATION_ATTEMPTS} tries (size={size}, "
        f"num_boxes={num_boxes}, gen_steps={gen_steps}, min_solution_moves={min_solution_moves}); "
        "use a larger size, fewer boxes, more gen_steps or a smaller min_solution_moves"
    )


def _reverse_played_room(
    rng: random.Random, size: int, num_boxes: int, gen_steps: int
) -> SokobanState | None:
    """Boxes start on targets; a random walk pulls them away (the reverse of pushing).

    Returns the state along the walk where the boxes are farthest from the targets (the latest
    such), which makes most rooms need more than a single push; None when the room is too small.
    """
    floor = _random_topology(rng, size)
    if len(floor) < num_boxes + 2:
        return None
    chosen = rng.sample(sorted(floor), num_boxes + 1)
    targets = frozenset(chosen[:num_boxes])
    player = chosen[num_boxes]
    walls = frozenset((r, c) for r in range(size) for c in range(size)) - floor
    boxes = set(targets)
    best_boxes, best_player, best_distance = frozenset(boxes), player, 0
    directions = list(MOVES.values())
    for _ in range(gen_steps):
        d_row, d_col = rng.choice(directions)
        ahead = (player[0] + d_row, player[1] + d_col)
        if ahead not in floor or ahead in boxes:
            continue
        behind = (player[0] - d_row, player[1] - d_col)
        if behind in boxes:  # walking away from a box pulls it along
            boxes.remove(behind)
            boxes.add(player)
        player = ahead
        distance = sum(min(_manhattan(box, target) for target in targets) for box in boxes)
        if distance >= best_distance:
            best_boxes, best_player, best_distance = frozenset(boxes), player, distance
    return SokobanState(size, size, walls, targets, best_boxes, best_player)


def _manhattan(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _random_topology(rng: random.Random, size: int) -> frozenset[Cell]:
    """Floor cells carved inside the outer wall by one random walk, so the floor is connected."""
    low, high = 1, size - 2
    row, col = rng.randint(low, high), rng.randint(low, high)
    floor = {(row, col)}
    directions = list(MOVES.values())
    d_row, d_col = rng.choice(directions)
    for _ in range(WALK_STEPS_PER_SIDE * size):
        if rng.random() < TURN_PROBABILITY:
            d_row, d_col = rng.choice(directions)
        row = min(max(row + d_row, low), high)
        col = min(max(col + d_col, low), high)
        floor.add((row, col))
        side = (row + d_col, col + d_row)  # the neighbour across the walking direction
        if rng.random() < WIDEN_PROBABILITY and low <= side[0] <= high and low <= side[1] <= high:
            floor.add(side)
    return frozenset(floor)
