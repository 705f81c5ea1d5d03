"""The `hf` engine: the project's own KV-cache sampler (rollout/generation.py) on the training model.

It samples from the training model itself, so there are no weights to push (`load_weights` is a
no-op) and the recorded log-probs are exactly what the update recomputes. Prompts are sorted by
length and cut into batches of at most `batch_size`, so that similar lengths share a batch (little
compute goes to left padding); the generator is consumed batch by batch in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from spear_rl.models.forward import token_logprobs
from spear_rl.rollout.engines.base import Sampling
from spear_rl.rollout.generation import GenOutput, generate


class HFEngine:
    name = "hf"

    def __init__(self, model: torch.nn.Module, pad_token_id: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator
    ) -> list[GenOutput]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs: list = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            generated = generate(
                self.model,
                [prompts[i] for i in chunk],
                sampling.max_new_tokens,
                eos_token_ids=list(sampling.stop_token_ids),
                pad_token_id=self.pad_token_id,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                generator=generator,
            )
            for i, out in zip(chunk, generated, strict=True):
                outputs[i] = out
        return outputs

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Nothing to push: this engine samples from the training model's own parameters."""

    @torch.no_grad()
    def score(self, token_ids: Sequence[int]) -> list[float]:
        ids = torch.tensor([list(token_ids)], device=next(self.model.parameters()).device)
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids))
        return logp[0, 1:].tolist()

    def sleep(self) -> None:
        """Nothing to free: the weights are the training model's."""

    def wake(self) -> None:
        """Nothing to restore."""

    def close(self) -> None:
        """Nothing to release."""
