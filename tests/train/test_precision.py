"""Training arithmetic: `auto` precision follows the hardware, bf16 SFT trains like fp32, fused
AdamW makes the same update as the per-tensor one."""

from __future__ import annotations

import pytest
import torch
from spear_toy_env import CorridorEnv, corridor_corpus
from test_warm_start import config

from spear_rl.models import ModelConfig, load_policy
from spear_rl.rollout import RolloutConfig
from spear_rl.train import precision
from spear_rl.train.precision import adamw, autocast, resolve_precision
from spear_rl.train.sft import SFTConfig, run_sft
from spear_rl.train.warm_start import sft_cache_key

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch, native):
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: native, raising=False)
    assert precision.native_bf16(CPU) is native
    assert resolve_precision("auto", CPU) == ("bfloat16" if native else "float32")
    assert resolve_precision("float32", CPU) == "float32"  # explicit choices are kept
    assert resolve_precision("bfloat16", CPU) == "bfloat16"
    with pytest.raises(ValueError, match="known: float32, bfloat16, auto"):
        resolve_precision("fp8", CPU)


def test_autocast_runs_matrix_products_in_bf16_only_when_asked():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bfloat16", CPU):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("float32", CPU):
        assert (a @ b).dtype == torch.float32


def _train(params, optimizer, steps=5):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizer.step()
    return [p.detach().clone() for p in params]


def test_fused_adamw_makes_the_same_update_as_the_per_tensor_one():
    shapes = [(64, 32), (32,), (7, 3, 5)]
    fused = [torch.nn.Parameter(torch.ones(s)) for s in shapes]
    plain = [torch.nn.Parameter(torch.ones(s)) for s in shapes]
    optimizer = adamw(fused, lr=1e-2, weight_decay=0.1)
    assert optimizer.defaults["fused"] is True
    reference = torch.optim.AdamW(plain, lr=1e-2, weight_decay=0.1, foreach=True)
    for got, want in zip(_train(fused, optimizer), _train(plain, reference), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_tensor_subclasses_keep_the_per_tensor_adamw():
    class Sharded(torch.Tensor):  # a stand-in for FSDP's DTensor parameters
        pass

    param = torch.ones(3).as_subclass(Sharded).requires_grad_()
    assert not adamw([param], lr=1e-3).defaults["fused"]


def _sft(precision_name):
    model, tokenizer = load_policy(ModelConfig(), corpus=corridor_corpus, seed=0)
    stats = run_sft(
        model,
        tokenizer,
        CorridorEnv,
        range(6),
        RolloutConfig(),
        SFTConfig(epochs=3, batch_size=8, lr=3e-3, precision=precision_name),
        seed=0,
    )
    return model, stats


def test_bf16_sft_trains_like_fp32_and_keeps_fp32_weights():
    model32, fp32 = _sft("float32")
    model16, bf16 = _sft("bfloat16")
    assert (fp32["precision"], bf16["precision"]) == ("float32", "bfloat16")
    assert all(p.dtype == torch.float32 for p in model16.parameters())  # master weights
    # the same first batch scored in bf16 differs from fp32 by rounding only (but differs)
    assert bf16["loss_first"] != fp32["loss_first"]
    assert bf16["loss_first"] == pytest.approx(fp32["loss_first"], rel=0.02)
    assert bf16["loss_last"] < 0.5 * bf16["loss_first"]
    assert bf16["loss_last"] == pytest.approx(fp32["loss_last"], rel=0.25)


def test_cache_key_holds_what_auto_means_here(tmp_path, monkeypatch):
    def key(name):
        return sft_cache_key(config(tmp_path, "k", tmp_path, sft={"precision": name}))

    assert key("float32") != key("bfloat16")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert key("auto") == key("bfloat16")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert key("auto") == key("float32")
