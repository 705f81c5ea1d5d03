"""The LM head gets a contiguous input: the last-position logits generation asks for are the same,
without the batched product against an expanded copy of the head's weight."""

from __future__ import annotations

import torch
from test_attention import _gqa_model

from spear_rl.models.forward import contiguous_head_input


def test_last_position_logits_are_unchanged_and_the_head_sees_a_contiguous_input():
    plain, patched = _gqa_model(), _gqa_model()
    contiguous_head_input(patched)
    contiguous_head_input(patched)  # once is enough: a second call adds no second hook
    assert len(patched.lm_head._forward_pre_hooks) == 1
    seen = []
    patched.lm_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    ids = torch.randint(1, 64, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = plain(input_ids=ids, logits_to_keep=1).logits
        got = patched(input_ids=ids, logits_to_keep=1).logits
    assert torch.equal(got, want)
    assert seen and all(x.is_contiguous() for x in seen)


def test_a_model_without_output_embeddings_is_left_alone():
    contiguous_head_input(torch.nn.Linear(4, 4))  # no get_output_embeddings: nothing to do
