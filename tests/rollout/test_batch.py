"""collate_samples: exact padded tensors, aligned with token_logprobs positions."""

from __future__ import annotations

import pytest
import torch

from spear_rl.rollout.batch import collate_samples
from spear_rl.rollout.sample import Sample


def _sample(prompt, response, mask, logprobs, advantage):
    s = Sample(prompt, response, mask, logprobs, group_id=0, traj_id=0)
    s.advantage = advantage
    return s


def test_collate_by_hand():
    samples = [
        _sample([7, 8], [9, 10, 2], [1, 1, 1], [-0.1, -0.2, -0.3], 1.5),
        _sample([7, 8, 11, 12], [13], [1], [-0.4], -0.5),
        _sample([7], [20, 21, 22], [1, 0, 1], [-0.5, -9.0, -0.7], 0.0),  # env token masked
    ]
    batch = collate_samples(samples, pad_token_id=99)
    assert batch.input_ids.tolist() == [
        [7, 8, 9, 10, 2],
        [7, 8, 11, 12, 13],
        [7, 20, 21, 22, 99],
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 1, 0, 1, 0]]
    expected_old = [[0, 0, -0.1, -0.2, -0.3], [0, 0, 0, 0, -0.4], [0, -0.5, 0, -0.7, 0]]
    assert torch.allclose(batch.old_logprobs, torch.tensor(expected_old))
    assert batch.advantages.tolist() == [1.5, -0.5, 0.0]
    assert batch.response_lengths.tolist() == [3, 1, 3]
    assert batch.loss_mask.dtype == torch.float32 and batch.input_ids.dtype == torch.long
    assert len(batch) == 3 and len(batch.to("cpu")) == 3


def test_collate_rejects_inconsistent_samples():
    with pytest.raises(ValueError, match="2 response ids but 1 mask values"):
        collate_samples([_sample([1], [2, 3], [1], [0.0, 0.0], 0.0)], pad_token_id=0)
    with pytest.raises(ValueError, match="at least one sample"):
        collate_samples([], pad_token_id=0)
