"""The policy's weights in checkpoint format, as an engine loads them.

`policy_state_dict` gives plain `save_pretrained` names and values for any policy. A LoRA policy
is merged on the fly, `W + scale * B @ A` per adapted layer, without touching the training model:
merging into the training weights and unmerging after the push would leave `W + d - d`, which in
floating point is not `W`, so every sync would nudge the trained base weights.
A tied LM head appears under both names (`model.embed_tokens.weight` and `lm_head.weight`): an
engine that unties it on load (vLLM's CPU backend repacks it) needs both.
"""

from __future__ import annotations

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
