"""The policy's weights in checkpoint format, as an engine loads them.

`policy_state_dict` gives plain `save_pretrained` names and values for any policy. A LoRA policy
is merged on the fly, `W + scale * B @ A` per adapted layer, without touching the training model:
merging into the training weights and unmerging after the push would leave `W + d - d`, which in
floating point is not `W`, so every sync would nudge the trained base weights.
A tied LM head appears under both names (`model.embed_tokens.weight` and `lm_head.weight`): an
engine that unties it on load (vLLM's CPU backend repacks it) needs both.

`policy_weights` yields the same entries one at a time, for a push that must not hold a second
full copy: a parameter sharded by FSDP2 (a DTensor) is gathered only when its turn comes and is
dropped once the engine has taken it, so a push needs one full tensor beyond the shards.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from spear_rl.models.loading import is_lora


@torch.no_grad()
def policy_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """Checkpoint-format name -> detached tensor of the policy (LoRA adapters merged in)."""
    if not is_lora(model):
        return {name: t.detach() for name, t in model.state_dict().items()}
    base = model.get_base_model()
    deltas = _lora_deltas(base)
    merged: dict[str, Tensor] = {}
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        plain = name.replace(".base_layer.", ".")
        module_name, _, leaf = plain.rpartition(".")
        if leaf == "weight" and module_name in deltas:
            tensor = tensor + deltas[module_name].to(tensor.dtype)
        merged[plain] = tensor.detach()
    missing = set(deltas) - {n.rpartition(".")[0] for n in merged}
    if missing:
        raise RuntimeError(f"LoRA layers with no base weight to merge into: {sorted(missing)}")
    return merged


@torch.no_grad()
def policy_weights(model: torch.nn.Module) -> Iterator[tuple[str, Tensor]]:
    """`policy_state_dict`'s entries one at a time, each sharded one gathered in its turn.

    Under FSDP2 every rank must consume the whole iterator in step with the others: each gather
    (`DTensor.full_tensor`) is a collective, and the names come in the same order on every rank.
    """
    state = model.state_dict()  # FSDP2: the sharded DTensors themselves, nothing gathered yet
    if not any(_is_dtensor(t) for t in state.values()):
        yield from policy_state_dict(model).items()
        return
    if is_lora(model):
        raise NotImplementedError(
            "pushing a LoRA policy sharded by FSDP into an engine is not supported: "
            "use train.parallel=ddp or rollout.engine=hf"
        )
    for name in list(state):
        tensor = state.pop(name).detach()  # a shard: the model owns it, nothing is copied
        yield name, tensor.full_tensor() if _is_dtensor(tensor) else tensor


def _is_dtensor(tensor: Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _lora_deltas(base: torch.nn.Module) -> dict[str, Tensor]:
    """Module name -> summed weight delta of its active adapters, for every LoRA layer."""
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in base.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if module.merged:
            raise RuntimeError(f"LoRA layer {name} is merged into its base weight; unmerge it")
        active = [a for a in module.active_adapters if a in module.lora_A]
        if active:
            deltas[name] = sum(module.get_delta_weight(a) for a in active)
    return deltas
