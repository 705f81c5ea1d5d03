"""generate(): determinism, stop tokens, truncation, batching and recorded log-probs."""

from __future__ import annotations

import pytest
import torch
from spear_toy_env import tiny_policy

import spear_rl.rollout.generation as generation
from spear_rl.models import token_logprobs
from spear_rl.rollout.generation import GenerationError, generate


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()


def _prompts(tokenizer):
    texts = [
        "You are at cell 1 of 5.",
        "Reach the exit at cell 0. You are at cell 4 of 6.",
        "left",
        "You walk along a corridor of numbered cells. Reply with an action.",
    ]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def _gen(model, tokenizer, prompts, n=12, seed=0, stops=None, **kwargs):
    return generate(
        model,
        prompts,
        n,
        eos_token_ids=stops if stops is not None else [tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def test_deterministic_given_the_generator(policy):
    model, tokenizer = policy
    prompts = _prompts(tokenizer)
    a = _gen(model, tokenizer, prompts, seed=3)
    b = _gen(model, tokenizer, prompts, seed=3)
    c = _gen(model, tokenizer, prompts, seed=4)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    assert [o.logprobs for o in a] == [o.logprobs for o in b]
    assert [o.token_ids for o in a] != [o.token_ids for o in c]


def test_truncated_when_no_stop_token(policy):
    model, tokenizer = policy
    outs = _gen(model, tokenizer, _prompts(tokenizer), n=7, stops=[10**9])
    assert all(len(o.token_ids) == 7 and len(o.logprobs) == 7 and o.truncated for o in outs)


def test_stops_at_eos_and_keeps_it(policy):
    model, tokenizer = policy
    everything = list(range(len(tokenizer)))  # any sampled token is a stop token
    outs = _gen(model, tokenizer, _prompts(tokenizer), n=7, stops=everything)
    assert all(len(o.token_ids) == 1 and not o.truncated for o in outs)
    # a real stop: greedy continuation cut at its own 3rd token, which must end the output
    free = _gen(model, tokenizer, _prompts(tokenizer)[:1], n=6, stops=[10**9], temperature=0)[0]
    stop = free.token_ids[2]
    cut = _gen(model, tokenizer, _prompts(tokenizer)[:1], n=6, stops=[stop], temperature=0)[0]
    first = free.token_ids.index(stop)
    assert cut.token_ids == free.token_ids[: first + 1]
    assert cut.token_ids[-1] == stop and not cut.truncated


def test_batched_equals_one_by_one_greedy(policy):
    model, tokenizer = policy
    prompts = _prompts(tokenizer)  # different lengths: left padding inside the batch
    batched = _gen(model, tokenizer, prompts, n=10, temperature=0)
    for prompt, out in zip(prompts, batched, strict=True):
        alone = _gen(model, tokenizer, [prompt], n=10, temperature=0)[0]
        assert alone.token_ids == out.token_ids
        assert alone.logprobs == pytest.approx(out.logprobs, abs=1e-4)


def test_stopped_rows_leave_the_batch_and_change_nothing(policy):
    model, tokenizer = policy
    note = tokenizer.encode("Note: ", add_special_tokens=False)
    prompts = _prompts(tokenizer) + [note + p for p in _prompts(tokenizer)]
    free = _gen(model, tokenizer, prompts, n=12, stops=[10**9], temperature=0)
    # rows 0 and 4 stop at once, row 1 (which switches tokens after a few steps) later
    stops = sorted({free[0].token_ids[0], free[4].token_ids[0], free[1].token_ids[-1]})
    sizes: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        batched = _gen(model, tokenizer, prompts, n=12, stops=stops, temperature=0, keep_kv=True)
    finally:
        hook.remove()
    assert sizes[0] == len(prompts) and min(sizes) < len(prompts), sizes  # stopped rows dropped
    for prompt, out in zip(prompts, batched, strict=True):
        alone = _gen(model, tokenizer, [prompt], n=12, stops=stops, temperature=0)[0]
        assert alone.token_ids == out.token_ids
        assert alone.logprobs == pytest.approx(out.logprobs, abs=1e-4)
        # the keys/values kept for the next turn are the row's own, whichever step it left at
        fresh = generation._prefill_prefix(model, list(prompt) + out.token_ids[:-1])
        assert out.kv.ids == fresh.ids
        for (keys, values), (fresh_keys, fresh_values) in zip(
            out.kv.layers, fresh.layers, strict=True
        ):
            assert torch.allclose(keys, fresh_keys, atol=1e-5)
            assert torch.allclose(values, fresh_values, atol=1e-5)


def test_shared_prefix_prefill_changes_nothing(policy, monkeypatch):
    model, tokenizer = policy
    prefix = tokenizer.encode(
        "You walk along a corridor of numbered cells. " * 3, add_special_tokens=False
    )
    prompts = [prefix + p for p in _prompts(tokenizer)]
    assert generation._shared_prefix_length(prompts) == len(prefix)
    shared = _gen(model, tokenizer, prompts, n=10, temperature=0)
    monkeypatch.setattr(generation, "SHARE_PREFIXES", False)
    plain = _gen(model, tokenizer, prompts, n=10, temperature=0)
    assert [o.token_ids for o in shared] == [o.token_ids for o in plain]
    for a, b in zip(shared, plain, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recorded_logprobs_match_a_fresh_forward(policy, temperature):
    model, tokenizer = policy
    prefix = tokenizer.encode(
        "You walk along a corridor of numbered cells. " * 2, add_special_tokens=False
    )
    prompts = _prompts(tokenizer) + [prefix + p for p in _prompts(tokenizer)]
    outs = _gen(model, tokenizer, prompts, n=16, temperature=temperature)
    rows = [p + o.token_ids for p, o in zip(prompts, outs, strict=True)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        fresh, _ = token_logprobs(model, ids, mask, temperature=temperature)
    for i, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
        recorded = torch.tensor(out.logprobs)
        assert torch.allclose(
            fresh[i, len(prompt) : len(prompt) + len(out.token_ids)], recorded, atol=1e-4
        )


def test_top_p_keeps_the_nucleus(policy):
    model, tokenizer = policy
    prompts = _prompts(tokenizer)
    greedy = _gen(model, tokenizer, prompts, n=8, temperature=0)
    tiny_nucleus = _gen(model, tokenizer, prompts, n=8, top_p=1e-6)  # only the top token survives
    assert [o.token_ids for o in tiny_nucleus] == [o.token_ids for o in greedy]


def test_model_mode_is_restored(policy):
    model, tokenizer = policy
    model.train()
    _gen(model, tokenizer, _prompts(tokenizer)[:1], n=2)
    assert model.training


def test_bad_arguments(policy):
    model, tokenizer = policy
    assert _gen(model, tokenizer, [], n=3) == []
    with pytest.raises(ValueError, match="at least one token"):
        _gen(model, tokenizer, [[]], n=3)
    with pytest.raises(ValueError, match="top_p"):
        _gen(model, tokenizer, [[5]], n=3, top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        _gen(model, tokenizer, [[5]], n=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_logits_are_a_clear_error(bad):
    logits = torch.tensor([[0.0, 1.0, 2.0], [0.5, bad, 0.0]])
    with pytest.raises(GenerationError, match="diverged"):
        generation._sample(logits, 1.0, 1.0, torch.Generator())


def test_nucleus_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = generation._nucleus(probs, 0.75)  # 0.5 < 0.75, 0.5 + 0.3 >= 0.75: keep the top two
    assert torch.allclose(kept, torch.tensor([[0.5, 0.3, 0.0, 0.0]]))


def test_inverse_cdf_draws_from_the_given_distribution():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.15, 0.05, 0.0]) * 2.0  # unnormalised, with zeros
    rows = probs.expand(200_000, -1)
    chosen = generation._inverse_cdf(rows, torch.Generator().manual_seed(0))
    counts = torch.bincount(chosen, minlength=len(probs)).double() / len(rows)
    assert counts[probs == 0].sum() == 0  # a zero-probability token is never drawn
    expected = probs.double() / probs.sum()
    # binomial std of each frequency <= 0.0012 at 200k draws: 5 std
    assert torch.allclose(counts, expected, atol=0.006)


def test_inverse_cdf_is_a_function_of_the_generator_state():
    probs = torch.softmax(torch.randn(8, 50, generator=torch.Generator().manual_seed(3)), -1)
    first = generation._inverse_cdf(probs, torch.Generator().manual_seed(7))
    again = generation._inverse_cdf(probs, torch.Generator().manual_seed(7))
    other = generation._inverse_cdf(probs, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    one_hot = torch.zeros(4, 5)
    one_hot[:, 2] = 1.0  # all the mass on one token, the last tokens empty
    assert generation._inverse_cdf(one_hot, torch.Generator()).tolist() == [2, 2, 2, 2]


def test_sampled_tokens_follow_the_tempered_nucleus_and_record_its_log_probs():
    # what generate() calls each step: temperature 0.5 sharpens, top_p 0.9 then drops the tail
    logits = torch.tensor([1.2, 0.5, 0.0, -0.9, 0.9, -3.0])
    rows = logits.expand(100_000, -1).contiguous()
    chosen, logp = generation._sample(rows, 0.5, 0.9, torch.Generator().manual_seed(0))
    tempered = torch.log_softmax(logits / 0.5, -1)
    kept = generation._nucleus(tempered.exp()[None], 0.9)[0]
    assert (kept == 0).sum() >= 2  # the nucleus does drop tokens here
    expected = kept / kept.sum()
    counts = torch.bincount(chosen, minlength=len(logits)).double() / len(rows)
    assert counts[kept == 0].sum() == 0  # outside the nucleus: never drawn
    assert torch.allclose(counts, expected.double(), atol=0.008)  # binomial std <= 0.0016
    assert torch.allclose(logp, tempered[chosen])  # the full tempered distribution's log-prob
