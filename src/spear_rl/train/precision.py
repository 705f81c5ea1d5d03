"""How the training arithmetic runs: bf16 autocast where the hardware multiplies bf16 natively, and
AdamW fused into one kernel.

On a CPU with AMX (Intel Sapphire Rapids and later) a bf16 matrix product of SFT's shapes ran 6-7x
an fp32 one, and the default's whole warm start 1.4-1.7x (docs/benchmarks.md); on a CPU without
native bf16 it is emulated and slower than fp32, so `auto` asks the hardware. Autocast keeps the
weights, gradients and optimiser in the parameter dtype (fp32 master weights) and log-softmax in
fp32 (`models/forward.py` upcasts the logits): only matrix products and attention run in bf16.
RL (`train.precision`, `rollout.precision`) may compute in bf16 too: its importance ratio compares
the update's log-probs with pi_old's, so whenever the sampler does not compute exactly as the update
does, pi_old is recomputed by the training model in the update's own arithmetic
(`train/rollout_engine.py`), and the ratio is 1 on fresh data up to the rounding of two forward
passes of different padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

PRECISIONS = ("float32", "bfloat16", "auto")


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matrix products are native: a CUDA GPU that supports bf16, or a CPU with
    AMX tiles or AVX512-BF16 instructions."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence the guard
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(name: str, device: torch.device) -> str:
    """`float32` or `bfloat16` for a config's `float32 | bfloat16 | auto` on this device."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return name


def dtype_of(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision name."""
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context that runs a forward pass in `precision` (already resolved): bf16 autocast, or
    nothing for float32."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0):
    """AdamW, fused into one kernel per step where torch fuses it for these tensors: the same
    update, 4.6x faster a step for SmolLM2-135M on 2 CPU cores (470 ms -> 100 ms). Sharded (FSDP)
    parameters keep the per-tensor-list implementation."""
    params = list(params)
    fused = bool(params) and all(_fusable(p) for p in params)
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, fused=True if fused else None
    )


def _fusable(param: torch.Tensor) -> bool:
    if type(param) not in (torch.nn.Parameter, torch.Tensor):  # DTensor and other subclasses
        return False
    return param.device.type in ("cpu", "cuda") and param.dtype in (
        torch.float32,
        torch.bfloat16,
        torch.float16,
    )
