"""Fixtures of the trainer tests."""

import pytest

from spear_rl.models.config import ModelConfig
from spear_rl.models.tiny import build_tiny_model
from spear_rl.models.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny():
    """A one-layer tiny policy and its tokenizer (the update and engine-log-prob tests)."""
    tok = build_tiny_tokenizer(["up down left right <think></think><action>up</action>"] * 20, 300)
    model = build_tiny_model(tok, ModelConfig(tiny_layers=1, tiny_hidden=32, tiny_heads=2), seed=0)
    return model, tok
