"""Samples -> padded tensors for the trainer, aligned with `token_logprobs`.

Row i holds prompt + response, right-padded. `loss_mask[i, j]` and `old_logprobs[i, j]` refer to the
token at position j, which is exactly where `token_logprobs(model, input_ids, attention_mask)[i, j]`
scores it (the log-prob of token j given tokens < j). Nothing is re-tokenised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from spear_rl.rollout.sample import Sample


@dataclass
class TokenBatch:
    input_ids: Tensor  # [B, L] long, right-padded prompt + response
    attention_mask: Tensor  # [B, L] long
    loss_mask: Tensor  # [B, L] float: 1 at positions holding a trained response token
    old_logprobs: Tensor  # [B, L] float: behaviour log-probs at those positions, 0 elsewhere
    # [B, L] float: the generation engine's log-probs there (= old_logprobs unless the trainer
    # recomputed old_logprobs with the training model)
    behaviour_logprobs: Tensor
    advantages: Tensor  # [B] float (Sample.advantage)
    response_lengths: Tensor  # [B] long: len(response_ids)

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def collate_samples(samples: Sequence[Sample], pad_token_id: int) -> TokenBatch:
    """Pad `samples` into one batch. Raises ValueError for a sample whose lists disagree in length."""
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    width = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    batch = len(samples)
    input_ids = torch.full((batch, width), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    loss_mask = torch.zeros((batch, width), dtype=torch.float32)
    old_logprobs = torch.zeros((batch, width), dtype=torch.float32)
    behaviour = torch.zeros((batch, width), dtype=torch.float32)
    for row, sample in enumerate(samples):
        n_prompt, n_response = len(sample.prompt_ids), len(sample.response_ids)
        if len(sample.loss_mask) != n_response or len(sample.old_logprobs) != n_response:
            raise ValueError(
                f"sample (traj {sample.traj_id}, turn {sample.turn}) has {n_response} response ids "
                f"but {len(sample.loss_mask)} mask values and {len(sample.old_logprobs)} log-probs"
            )
        end = n_prompt + n_response
        input_ids[row, :n_prompt] = torch.as_tensor(sample.prompt_ids, dtype=torch.long)
        if n_response:
            input_ids[row, n_prompt:end] = torch.as_tensor(sample.response_ids, dtype=torch.long)
            loss_mask[row, n_prompt:end] = torch.as_tensor(sample.loss_mask, dtype=torch.float32)
            old_logprobs[row, n_prompt:end] = torch.as_tensor(
                sample.old_logprobs, dtype=torch.float32
            )
            engine = sample.behaviour_logprobs
            if engine is not None and len(engine) != n_response:
                raise ValueError(
                    f"sample (traj {sample.traj_id}, turn {sample.turn}) has {n_response} response "
                    f"ids but {len(engine)} behaviour log-probs"
                )
            behaviour[row, n_prompt:end] = torch.as_tensor(
                sample.old_logprobs if engine is None else engine, dtype=torch.float32
            )
        attention_mask[row, :end] = 1
    # A masked-out position never carries a behaviour log-prob.
    old_logprobs = old_logprobs * loss_mask
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        old_logprobs=old_logprobs,
        behaviour_logprobs=behaviour * loss_mask,
        advantages=torch.tensor([float(s.advantage) for s in samples], dtype=torch.float32),
        response_lengths=torch.tensor([len(s.response_ids) for s in samples], dtype=torch.long),
    )
