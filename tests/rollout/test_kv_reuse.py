"""rollout.kv_reuse: the hf engine keeps keys/values between turns and prefills identical prompts
once. Nothing it generates may change (greedy tokens identical, log-probs those of a fresh
forward), in both layouts, with left padding and episodes ending at different turns."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from spear_toy_env import EndsEarly, tiny_policy

from spear_rl.models import token_logprobs
from spear_rl.rollout import RolloutConfig, collate_samples, run_rollout
from spear_rl.rollout.engines.base import Sampling
from spear_rl.rollout.engines.hf import HFEngine
from spear_rl.rollout.engines.kv_store import KVStore
from spear_rl.rollout.generation import PrefixKV, generate


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()


def _rollout(model, tokenizer, layout, kv_reuse, temperature, seeds=range(6), **kw):
    cfg = RolloutConfig(
        group_size=3,
        max_turns=4,
        max_response_tokens=10,
        layout=layout,
        temperature=temperature,
        kv_reuse=kv_reuse,
        **kw,
    )
    return run_rollout(model, tokenizer, EndsEarly, list(seeds), cfg, seed=7)


def _fresh_gap(model, tokenizer, samples) -> float:
    batch = collate_samples(samples, tokenizer.pad_token_id)
    with torch.no_grad():
        fresh, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    return ((fresh - batch.old_logprobs) * batch.loss_mask).abs().max().item()


@pytest.mark.parametrize("layout", ["per_turn", "whole"])
def test_greedy_tokens_identical_and_fewer_tokens_prefilled(policy, layout):
    model, tokenizer = policy
    off = _rollout(model, tokenizer, layout, False, 0.0)
    on = _rollout(model, tokenizer, layout, True, 0.0)
    assert [len(t.turns) for t in on.trajectories] == [s % 3 + 1 for s in range(6) for _ in "abc"]
    assert [s.response_ids for s in on.samples] == [s.response_ids for s in off.samples]
    assert [s.prompt_ids for s in on.samples] == [s.prompt_ids for s in off.samples]
    for a, b in zip(on.samples, off.samples, strict=True):
        assert a.old_logprobs == pytest.approx(b.old_logprobs, abs=1e-5)
    assert _fresh_gap(model, tokenizer, on.samples) < 1e-4
    # same prompts, so the same full cost; reuse prefills strictly less (the group's identical
    # first prompts once, and every later turn only its new tokens or its window's change)
    assert on.stats["prefill_tokens_full"] == off.stats["prefill_tokens_full"]
    turns = sum(len(t.turns) for t in on.trajectories)
    assert on.stats["prefill_tokens_full"] == on.stats["prompt_len_mean"] * turns
    assert on.stats["prefill_tokens"] < off.stats["prefill_tokens"]
    assert on.stats["kv_full_prefills"] == 0


def test_whole_layout_prefills_only_the_new_tokens(policy):
    model, tokenizer = policy
    on = _rollout(model, tokenizer, "whole", True, 0.0)
    # turn 0: 6 distinct first prompts (the shared system prompt once); later turns: the last
    # response token + the env message, never the conversation before it
    firsts = {tuple(t.samples[0].prompt_ids) for t in on.trajectories}
    later = 0
    for traj in on.trajectories:
        (sample,) = traj.samples
        starts = [
            i
            for i in range(1, len(sample.loss_mask))
            if sample.loss_mask[i - 1] == 0 and sample.loss_mask[i] == 1
        ]
        # the env message (mask 0) before each later turn, plus the response token before it
        for start in starts:
            end = start
            while sample.loss_mask[end - 1] == 0:
                end -= 1
            later += start - end + 1
    assert on.stats["prefill_tokens"] <= sum(len(p) for p in firsts) + later


@pytest.mark.parametrize("layout", ["per_turn", "whole"])
def test_sampled_runs_with_the_same_seed_are_identical(policy, layout):
    model, tokenizer = policy
    off = _rollout(model, tokenizer, layout, False, 1.0)
    on = _rollout(model, tokenizer, layout, True, 1.0)
    assert [s.response_ids for s in on.samples] == [s.response_ids for s in off.samples]
    assert _fresh_gap(model, tokenizer, on.samples) < 1e-4


def test_per_turn_history_window_reuses_only_the_shared_prefix(policy):
    model, tokenizer = policy
    on = _rollout(model, tokenizer, "per_turn", True, 1.0, history_turns=1)
    engine = HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=True)
    by_turn: dict[int, list] = {}
    for sample in on.samples:
        by_turn.setdefault(sample.turn, []).append(sample.prompt_ids)
    sampling = Sampling(4, (tokenizer.eos_token_id,), temperature=0.0)
    engine.generate(by_turn[1], sampling, torch.Generator())
    previous = {tuple(p) for p in by_turn[1]}
    distinct = [  # no merged duplicates, and none that repeats a turn-1 prompt (same reply twice)
        list(p)
        for p in dict.fromkeys(map(tuple, by_turn[2]))
        if not any(p[: len(q)] in previous for q in by_turn[1])
    ]
    assert len(distinct) >= 3
    outs = engine.generate(distinct, sampling, torch.Generator())
    for prompt, out in zip(distinct, outs, strict=True):
        # the window moved: the previous turn's prompt is no prefix, but its opening is reused
        assert 0 < out.reused < len(prompt) and out.prefilled < len(prompt)


def test_generate_with_prefixes_and_duplicates_equals_plain(policy):
    model, tokenizer = policy
    texts = ["You are at cell 1 of 5.", "Reach the exit at cell 0. You are at cell 4 of 6.", "left"]
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    prompts = [prompts[0], prompts[1], prompts[0], prompts[2], prompts[1]]  # duplicates, padding
    kw = dict(eos_token_ids=[10**9], pad_token_id=tokenizer.pad_token_id, temperature=0.0)
    plain = generate(model, prompts, 6, generator=torch.Generator(), **kw)
    kept = generate(model, prompts[:2], 6, generator=torch.Generator(), keep_kv=True, **kw)
    assert [len(k.kv) for k in (kept[0], kept[1])] == [len(prompts[0]) + 5, len(prompts[1]) + 5]
    # continue from the kept keys/values of prompt + response: a longer, different-length batch
    longer = [p + k.token_ids + [5] for p, k in zip(prompts[:2], kept, strict=True)]
    reference = generate(model, longer, 6, generator=torch.Generator(), **kw)
    reused = generate(
        model,
        longer,
        6,
        generator=torch.Generator(),
        prefixes=[kept[0].kv, kept[1].kv.head(3)],
        **kw,
    )
    assert [o.token_ids for o in reused] == [o.token_ids for o in reference]
    assert [o.prefilled for o in reused] == [2, len(longer[1]) - 3]
    for a, b in zip(reused, reference, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    merged = generate(model, prompts, 6, generator=torch.Generator(), merge_duplicates=True, **kw)
    assert [o.token_ids for o in merged] == [o.token_ids for o in plain]
    assert [o.prefilled for o in merged] == [len(prompts[0]), len(prompts[1]), 0, 1, 0]
    with pytest.raises(ValueError, match="proper prefix"):
        generate(model, prompts[:1], 2, generator=torch.Generator(), prefixes=[kept[1].kv], **kw)


def _entry(ids):
    kv = torch.zeros(1, len(ids), 2)
    return PrefixKV(list(ids), [(kv, kv)])


def test_store_matches_the_longest_prefix_and_holds_one_call():
    store = KVStore()
    store.replace([_entry([1, 2, 3, 4]), _entry([1, 2, 9]), None])
    assert len(store) == 2
    found = store.match([[1, 2, 3, 4, 5], [1, 2, 9, 9], [1, 2, 3], [7, 1], [1, 2, 3, 4]])
    assert [len(f) if f else 0 for f in found] == [4, 3, 2, 0, 3]  # never the whole prompt
    assert found[0].ids == [1, 2, 3, 4] and found[1].ids == [1, 2, 9]
    store.replace([_entry([5, 6])])  # each call replaces the store: ended episodes are gone
    assert [f.ids if f else None for f in store.match([[1, 2, 3, 4, 5], [5, 6, 7]])] == [
        None,
        [5, 6],
    ]


def test_engine_frees_its_cache_and_drops_it_when_the_weights_change(policy):
    model, tokenizer = policy
    engine = HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=True)
    prompt = tokenizer.encode("You are at cell 1 of 5.", add_special_tokens=False)
    sampling = Sampling(3, (10**9,), temperature=0.0)
    first = engine.generate([prompt, prompt], sampling, torch.Generator())
    assert len(engine.store) == 2 and all(o.kv is None for o in first)
    again = engine.generate([prompt + first[0].token_ids], sampling, torch.Generator())
    assert again[0].prefilled == 1
    with torch.no_grad():
        param = next(model.parameters())
        param.add_(0.0)  # an in-place update (e.g. the optimiser step)
    fresh = engine.generate([prompt + first[0].token_ids], sampling, torch.Generator())
    assert fresh[0].reused == 0 and fresh[0].prefilled == len(prompt) + 3
    engine.sleep()  # the trainer calls it after each rollout
    assert len(engine.store) == 0
    off = HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=False)
    out = off.generate([prompt, prompt], sampling, torch.Generator())
    assert len(off.store) == 0 and [o.prefilled for o in out] == [len(prompt)] * 2


def test_switch_is_a_config_key():
    assert RolloutConfig().kv_reuse is True
    assert dataclasses.replace(RolloutConfig(), kv_reuse=False).kv_reuse is False


def test_a_cache_layer_that_takes_only_keys_turns_reuse_off_with_a_warning(policy, monkeypatch):
    from transformers.cache_utils import StaticLayer

    from spear_rl.rollout.generation import supports_kv_reuse

    model, tokenizer = policy
    assert supports_kv_reuse(model)
    monkeypatch.setattr(StaticLayer, "lazy_initialization", lambda self, key_states: None)
    assert not supports_kv_reuse(model)
    with pytest.warns(UserWarning, match="prefilled in full"):
        engine = HFEngine(model, tokenizer.pad_token_id, 64, kv_reuse=True)
    assert engine.kv_reuse is False
