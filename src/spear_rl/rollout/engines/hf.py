"""The `hf` engine: the project's own KV-cache sampler (rollout/generation.py) on the training model.

It samples from the training model itself, so there are no weights to push (`load_weights` is a
no-op) and the recorded log-probs are exactly what the update recomputes. Prompts are sorted by
length and cut into batches of at most `batch_size`, so that similar lengths share a batch (little
compute goes to left padding); the generator is consumed batch by batch in that order.

With `kv_reuse` (`rollout.kv_reuse`) it keeps the keys/values of the last call's rows (kv_store.py)
and starts each new prompt from the entry sharing its longest prefix, and prefills identical
prompts in a batch once: a multi-turn episode's next turn prefills only what is new. Each output
says how many prompt tokens were prefilled and how many were reused (the runner's
`rollout/prefill_tokens` and `rollout/kv_reused_tokens`). Reuse changes no number beyond float
rounding (tests/rollout/test_kv_reuse.py), nor the order in which the generator is consumed.

With a `dtype` other than the policy's (`rollout.precision: bfloat16`) it samples from its own copy
of the weights in that dtype instead, like vLLM: the trainer pushes the weights after each update
(`load_weights`, checked on a probe) and recomputes pi_old with the training model, keeping these
log-probs as the behaviour policy's. On a 2-core CPU with AMX it barely pays for SmolLM2-135M (an
evaluation 1.03x, docs/benchmarks.md); it is meant for GPUs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import torch

from spear_rl.models.attention import use_grouped_sdpa
from spear_rl.models.forward import base_model, contiguous_head_input, token_logprobs
from spear_rl.rollout.engines.base import EngineSyncError, Sampling
from spear_rl.rollout.engines.kv_store import KVStore, weights_fingerprint
from spear_rl.rollout.generation import GenOutput, generate, supports_kv_reuse


class HFEngine:
    name = "hf"

    def __init__(
        self,
        model: torch.nn.Module,
        pad_token_id: int,
        batch_size: int,
        kv_reuse: bool,
        dtype: torch.dtype | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        own = next(model.parameters()).dtype
        self.dtype = dtype or own
        # True: samples from the training model itself (nothing to push, log-probs are its own)
        self.shares_weights = self.dtype == own
        self.model = model if self.shares_weights else _own_copy(model, self.dtype)
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size
        # a model whose cache is not plain full attention (sliding windows) prefills every prompt
        self.kv_reuse = kv_reuse and supports_kv_reuse(model)
        if kv_reuse and not self.kv_reuse:
            warnings.warn(
                "rollout.kv_reuse: this model's KV cache (sliding-window layers, or a transformers "
                "version whose static cache layers differ) cannot take reused keys/values; every "
                "prompt is prefilled in full (same samples, slower)",
                stacklevel=2,
            )
        self.store = KVStore()
        self._fingerprint: tuple | None = None

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator
    ) -> list[GenOutput]:
        prefixes: list = [None] * len(prompts)
        if self.kv_reuse:
            fingerprint = weights_fingerprint(self.model)
            if fingerprint != self._fingerprint:  # entries made by other weights are wrong
                self.store.clear()
                self._fingerprint = fingerprint
            prefixes = self.store.match(prompts)
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
                prefixes=[prefixes[i] for i in chunk] if self.kv_reuse else None,
                keep_kv=self.kv_reuse,
                merge_duplicates=self.kv_reuse,
            )
            for i, out in zip(chunk, generated, strict=True):
                outputs[i] = out
        if self.kv_reuse:
            self.store.replace([out.kv for out in outputs])
            for out in outputs:
                out.kv = None  # the store holds them; samples must not
        return outputs

    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy checkpoint-format weights into the engine's own copy (cast to its dtype); nothing
        to push when it samples from the training model's own parameters."""
        if not self.shares_weights:
            _copy_weights(self.model, named_tensors)

    @torch.no_grad()
    def score(self, token_ids: Sequence[int]) -> list[float]:
        ids = torch.tensor([list(token_ids)], device=next(self.model.parameters()).device)
        logp, _ = token_logprobs(self.model, ids, torch.ones_like(ids))
        return logp[0, 1:].tolist()

    def sleep(self) -> None:
        """Free the kept keys/values (the trainer calls this after each rollout, before the
        update); the weights are the training model's."""
        self.store.clear()

    def wake(self) -> None:
        """Nothing to restore."""

    def close(self) -> None:
        self.store.clear()


def _own_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A plain model of the policy's architecture in `dtype`, holding its weights (a LoRA policy
    merged, an FSDP-sharded one gathered a tensor at a time), for generation only."""
    from transformers import AutoModelForCausalLM

    from spear_rl.rollout.engines.weights import policy_weights

    config = base_model(model).config
    with torch.device(next(model.parameters()).device):
        copy = AutoModelForCausalLM.from_config(
            config, dtype=dtype, attn_implementation=config._attn_implementation
        )
    copy.requires_grad_(False).eval()
    use_grouped_sdpa(copy)
    contiguous_head_input(copy)
    _copy_weights(copy, policy_weights(model))
    return copy


@torch.no_grad()
def _copy_weights(copy: torch.nn.Module, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Every weight of `copy` overwritten (and cast) from the checkpoint-format `named_tensors`;
    an unknown name or a weight left behind raises EngineSyncError."""
    own = copy.state_dict()  # views of the copy's parameters
    pushed = set()
    for name, tensor in named_tensors:
        if name not in own:
            raise EngineSyncError(f"the hf engine's copy has no weight named {name!r}")
        own[name].copy_(tensor)
        pushed.add(name)
    if pushed != set(own):
        left = sorted(set(own) - pushed)
        raise EngineSyncError(f"the push left {len(left)} weights behind, e.g. {left[:3]}")
