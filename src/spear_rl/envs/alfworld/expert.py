"""An ALFWorld expert that knows only what the agent has seen, for imitation learning.

The engine's planner (Fast Downward) plans with the full state: from the first turn it walks
straight to the cabinet where the mug is hidden. A policy that imitates it must guess that cabinet
from a room it has not looked into, so SFT on planner moves teaches guessing. This expert follows
the planner, except while the planner is on its way to fetch an object (or a lamp) that no
observation has shown yet. Then it searches the way an agent can: open the receptacle it stands at
when that is closed, else go to the next receptacle in the room's order (the order of the
"go to" commands at the start), wrapping around. Once the object is in sight the planner takes
over again, and it replans from the real state after every step.

It is ALFWorld's handcoded-expert idea (search, then act) on top of its planner, and it wins every
task, only in more steps than the planner.
"""

from __future__ import annotations

import re

_GO_TO = "go to "


class SearchingExpert:
    """Tracks what the agent has seen in one episode and turns planner plans into honest moves."""

    def __init__(self) -> None:
        self.start("", [])

    def start(self, intro: str, admissible: list[str]) -> None:
        """A new episode: the intro text and the first admissible commands (room order)."""
        self.receptacles = [c[len(_GO_TO) :] for c in admissible if c.startswith(_GO_TO)]
        self.seen_text = intro.lower()
        self.location: str | None = None
        self.closed_here = False
        self.visited: set[str] = set()

    def observe(self, command: str, feedback: str) -> None:
        """Record a valid command and the engine's reply."""
        feedback = feedback.lower()
        self.seen_text += "\n" + feedback
        if command.startswith(_GO_TO):
            self.location = command[len(_GO_TO) :]
            self.visited.add(self.location)
            self.closed_here = f"the {self.location} is closed" in feedback
        elif self.location is not None and command == f"open {self.location}":
            self.closed_here = False
        elif self.location is not None and command == f"close {self.location}":
            self.closed_here = True

    def has_seen(self, name: str) -> bool:
        return re.search(rf"\b{re.escape(name)}\b", self.seen_text) is not None

    def action(self, plan: list[str]) -> str | None:
        """The next move, given the planner's plan from the current state."""
        if not plan:
            return None
        sought = _sought_object(plan)
        if sought is None or self.has_seen(sought):
            return plan[0]
        if self.closed_here:
            return f"open {self.location}"
        if not self.receptacles or self.visited >= set(self.receptacles):
            return plan[0]  # looked everywhere already (e.g. walked past a closed fridge)
        return _GO_TO + self._next_receptacle()

    def _next_receptacle(self) -> str:
        if self.location not in self.receptacles:
            return self.receptacles[0]
        return self.receptacles[(self.receptacles.index(self.location) + 1) % len(self.receptacles)]


def _sought_object(plan: list[str]) -> str | None:
    """The object the plan is walking to pick up or use, or None when it is doing something else.

    The plan heads for an object when its first commands are walking and opening, followed by
    "take O from R" or "use O".
    """
    for command in plan:
        if command.startswith((_GO_TO, "open ")):
            continue
        if command.startswith("take ") and " from " in command:
            return command[len("take ") : command.index(" from ")]
        if command.startswith("use "):
            return command[len("use ") :]
        return None
    return None
