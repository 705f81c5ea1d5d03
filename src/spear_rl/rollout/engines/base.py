"""The generation-engine interface the rollout runner talks to (DESIGN.md, "the engine round").

An engine turns prompt token ids into sampled token ids plus the behaviour log-prob of each
sampled token, under one contract whatever is behind it:
- a response stops right after the first stop token, which is included; otherwise it holds
  exactly `max_new_tokens` tokens and is marked truncated;
- each recorded log-prob is `log_softmax(logits / temperature)` of the sampled token (untempered
  when greedy, and the full distribution even with `top_p < 1`), the quantity
  `models.forward.token_logprobs` recomputes in the update;
- sampling is a function of the caller's `torch.Generator` (and the weights), so a rollout seeded
  the same way samples the same tokens.
The runner never knows which engine it has; the trainer owns the engine and pushes new weights
into it at one place after each update (`load_weights`), and `sleep`/`wake` free accelerator
memory around the update where the engine can.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from spear_rl.rollout.generation import GenOutput


@dataclass(frozen=True)
class Sampling:
    """How to sample one batch of responses."""

    max_new_tokens: int
    stop_token_ids: tuple[int, ...]
    temperature: float = 1.0
    top_p: float = 1.0


class EngineSyncError(RuntimeError):
    """The engine's weights do not match the training model after a weight push."""


class GenerationEngine(Protocol):
    name: str
    # True: it samples from the training model's own parameters in their own arithmetic (the hf
    # engine by default): no weights to push, and its log-probs are the update's pi_old
    shares_weights: bool
    dtype: torch.dtype  # what it computes in (the sync check's tolerance)

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator
    ) -> list[GenOutput]:
        """One response per prompt, in order, under the contract above."""
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights (checkpoint-format names); raise EngineSyncError on a
        push that leaves any tensor behind."""
        ...

    def score(self, token_ids: Sequence[int]) -> list[float]:
        """`log p(token_ids[i] | token_ids[:i])` for i >= 1 at temperature 1 (the sync probe)."""
        ...

    def sleep(self) -> None:
        """Free accelerator memory until `wake` (a no-op where the engine cannot)."""
        ...

    def wake(self) -> None: ...

    def close(self) -> None: ...
