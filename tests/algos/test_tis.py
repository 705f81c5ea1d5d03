"""Truncated importance weights for the engine/trainer mismatch, by hand."""

import math

import torch

from spear_rl.algos.tis import truncated_is_weights


def test_weights_are_the_capped_ratio_on_valid_tokens_and_one_elsewhere():
    old = torch.tensor([[math.log(0.5), math.log(0.2), math.log(0.9), 0.0]])
    engine = torch.tensor([[math.log(0.25), math.log(0.4), math.log(0.1), -3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    weights = truncated_is_weights(old, engine, mask, cap=2.5)
    # 0.5/0.25 = 2, 0.2/0.4 = 0.5, 0.9/0.1 = 9 -> capped at 2.5, masked -> 1
    assert torch.allclose(weights, torch.tensor([[2.0, 0.5, 2.5, 1.0]]), atol=1e-6)


def test_cap_zero_is_off_and_weights_carry_no_gradient():
    old = torch.zeros(2, 3, requires_grad=True)
    engine = torch.full((2, 3), -1.0)
    mask = torch.ones(2, 3)
    assert torch.equal(truncated_is_weights(old, engine, mask, cap=0.0), torch.ones(2, 3))
    assert not truncated_is_weights(old, engine, mask, cap=2.0).requires_grad
