"""What the `hf` engine keeps between turns: the keys/values of the sequences its last call made.

A multi-turn episode's next prompt starts with what the model already read: in the `whole` layout
the whole previous prompt and response (the env's message is appended), in `per_turn` the system
prompt, the task and whatever of the history window did not move. The store holds, for every row
of the last `generate` call, the keys/values of its prompt + response (all but the last token),
and hands each new prompt the entry sharing its longest prefix, so only the rest is prefilled.

Lookup is by content (the longest common prefix of token ids), not by episode: the runner needs
to tell the engine nothing, and any entry with the same leading tokens is as good as the row's
own. Memory stays bounded by one call: each call replaces the store with its own rows, so an
episode that ended (and sent no prompt) loses its entry at the next turn, and `clear` (the
engine's `sleep`, called by the trainer after each rollout) frees the rest. Entries are only valid
for the weights that made them: the engine clears the store when the weights change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spear_rl.rollout.generation import PrefixKV

# Prompts compared with every entry at once, in blocks of this many (bounds the [P, E, L] table).
MATCH_BLOCK = 16


class KVStore:
    def __init__(self) -> None:
        self.entries: list[PrefixKV] = []
        self._ids: torch.Tensor | None = None  # [entries, longest], padded with -1

    def __len__(self) -> int:
        return len(self.entries)

    def nbytes(self) -> int:
        return sum(e.nbytes() for e in self.entries)

    def clear(self) -> None:
        self.entries, self._ids = [], None

    def replace(self, entries: Sequence[PrefixKV | None]) -> None:
        self.entries = [e for e in entries if e is not None and len(e)]
        if not self.entries:
            self._ids = None
            return
        longest = max(len(e) for e in self.entries)
        ids = torch.full((len(self.entries), longest), -1, dtype=torch.long)
        for i, entry in enumerate(self.entries):
            ids[i, : len(entry)] = torch.tensor(entry.ids, dtype=torch.long)
        self._ids = ids

    def match(self, prompts: Sequence[Sequence[int]]) -> list[PrefixKV | None]:
        """For each prompt, the stored entry with its longest common prefix, cut to that prefix
        (and short of the whole prompt: its last token must be fed); None when nothing matches."""
        if self._ids is None or not prompts:
            return [None] * len(prompts)
        width = min(self._ids.shape[1], max(len(p) for p in prompts))
        stored = self._ids[:, :width]
        found: list[PrefixKV | None] = []
        for start in range(0, len(prompts), MATCH_BLOCK):
            block = prompts[start : start + MATCH_BLOCK]
            asked = torch.full((len(block), width), -2, dtype=torch.long)
            for i, prompt in enumerate(block):
                cut = list(prompt[:width])
                asked[i, : len(cut)] = torch.tensor(cut, dtype=torch.long)
            same = asked[:, None, :] == stored[None, :, :]  # [P, E, width]
            # length of the common prefix: the first mismatch, or the whole width
            mismatch = ~same
            lcp = torch.where(mismatch.any(-1), mismatch.byte().argmax(-1), width)
            best, which = lcp.max(dim=1)
            for prompt, length, entry in zip(block, best.tolist(), which.tolist(), strict=True):
                length = min(length, len(prompt) - 1)
                found.append(self.entries[entry].head(length) if length > 0 else None)
        return found


def weights_fingerprint(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter is updated in place (its version counter) or replaced."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())
