"""SFT cold start: prompts identical to the rollout's, loss goes down, corpus covers the env text."""

from __future__ import annotations

import re

import pytest
import torch
from spear_toy_env import CorridorEnv, corridor_corpus

import spear_rl.rollout.engines.hf as hf_engine
from spear_rl.envs.base import INVALID_ACTION_FEEDBACK
from spear_rl.models import ModelConfig, load_policy, token_logprobs
from spear_rl.rollout import RolloutConfig, Sample, collate_samples, run_rollout
from spear_rl.rollout.generation import GenOutput
from spear_rl.train.sft import (
    SFTConfig,
    _play_experts,
    expert_trajectories,
    run_sft,
    sft_batches,
    sft_corpus_texts,
    sft_rows,
)

SEEDS = list(range(6))


@pytest.fixture()
def policy():
    return load_policy(ModelConfig(), corpus=corridor_corpus, seed=0)


def _expert_generate(tokenizer, thought):
    """generate() replaced by the corridor expert, answering in env.format_action's format."""

    def fake(model, prompts, max_new_tokens, **kwargs):
        outs = []
        for prompt in prompts:
            text = tokenizer.decode(prompt)
            position = int(re.findall(r"You are at cell (\d+) of", text)[-1])
            goal = int(re.search(r"exit at cell (\d+)", text).group(1))
            action = "left" if goal < position else "right"
            response = CorridorEnv().format_action(action, thought)
            ids = tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id]
            outs.append(GenOutput(ids, [0.0] * len(ids), False))
        return outs

    return fake


@pytest.mark.parametrize("layout", ["per_turn", "whole"])
def test_sft_prompts_equal_rollout_prompts(policy, monkeypatch, layout):
    model, tokenizer = policy
    thought = "the exit is near"
    cfg = RolloutConfig(group_size=1, max_turns=8, layout=layout)
    monkeypatch.setattr(hf_engine, "generate", _expert_generate(tokenizer, thought))
    rollout = run_rollout(model, tokenizer, CorridorEnv, SEEDS, cfg, seed=0)
    experts = expert_trajectories(tokenizer, CorridorEnv, SEEDS, cfg, thought)
    assert len(experts) == len(rollout.trajectories)
    for pairs, traj in zip(experts, rollout.trajectories, strict=True):
        assert traj.won and len(pairs) == len(traj.turns)
        if layout == "per_turn":
            assert [p for p, _ in pairs] == [s.prompt_ids for s in traj.samples]
            assert [r for _, r in pairs] == [s.response_ids for s in traj.samples]
        else:
            (sample,) = traj.samples
            context = sample.prompt_ids + sample.response_ids
            starts = [
                i
                for i, m in enumerate(sample.loss_mask)
                if m and (i == 0 or not sample.loss_mask[i - 1])
            ]
            for (prompt, response), start in zip(pairs, starts, strict=True):
                at = len(sample.prompt_ids) + start
                assert prompt == context[:at]
                assert response == context[at : at + len(response)]


def test_whole_layout_trains_each_episode_as_the_rollouts_sample(policy, monkeypatch):
    model, tokenizer = policy
    cfg = RolloutConfig(group_size=1, max_turns=8, layout="whole")
    monkeypatch.setattr(hf_engine, "generate", _expert_generate(tokenizer, ""))
    rollout = run_rollout(model, tokenizer, CorridorEnv, SEEDS, cfg, seed=0)
    episodes, _ = _play_experts(tokenizer, CorridorEnv, SEEDS, cfg, "")
    rows = sft_rows(episodes, "whole")
    assert len(rows) == len(SEEDS)
    assert max(turns for _, turns in rows) > 1
    for (row, turns), traj in zip(rows, rollout.trajectories, strict=True):
        (sample,) = traj.samples
        assert turns == len(traj.turns)
        assert row.prompt_ids == sample.prompt_ids
        assert row.response_ids == sample.response_ids
        assert row.loss_mask == sample.loss_mask


def test_a_merged_episode_scores_its_responses_as_its_turn_rows_do(policy):
    model, tokenizer = policy
    cfg = RolloutConfig(max_turns=8, layout="whole")
    episodes, _ = _play_experts(tokenizer, CorridorEnv, SEEDS, cfg, "")
    merged = [sample for sample, _ in sft_rows(episodes, "whole")]
    apart = [sample for sample, _ in sft_rows(episodes, "per_turn")]
    assert len(apart) == sum(len(e) for e in episodes) > len(merged)

    def scored(samples):
        batch = collate_samples(samples, tokenizer.pad_token_id)
        with torch.no_grad():
            logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
        return logp[batch.loss_mask.bool()], int(batch.attention_mask.sum())

    merged_logp, merged_tokens = scored(merged)
    apart_logp, apart_tokens = scored(apart)
    # the same target tokens in the same order, each on the same context
    torch.testing.assert_close(merged_logp, apart_logp, atol=1e-5, rtol=0)
    assert merged_tokens < 0.6 * apart_tokens


def test_a_detour_stays_in_the_merged_row_untrained(policy):
    _, tokenizer = policy
    cfg = RolloutConfig(max_turns=12, history_turns=12, layout="whole")
    episodes, _ = _play_experts(tokenizer, CorridorEnv, range(20), cfg, "", detour_rate=0.4)
    detoured = [e for e in episodes if len({trained for _, _, trained in e}) == 2]
    assert detoured
    assert sft_rows([[t for t in e if not t[2]] for e in detoured], "whole") == []
    for turns in detoured:
        ((row, trained),) = sft_rows([turns], "whole")
        assert trained == sum(t for _, _, t in turns)
        context = row.prompt_ids + row.response_ids
        for prompt, response, was_trained in turns:
            start = len(prompt) - len(row.prompt_ids)
            assert context[len(prompt) : len(prompt) + len(response)] == response
            assert row.loss_mask[start : start + len(response)] == [int(was_trained)] * len(
                response
            )
        assert sum(row.loss_mask) == sum(len(r) for _, r, t in turns if t)


def test_turns_that_do_not_extend_each_other_keep_their_own_rows():
    turns = [
        ([1, 2, 3], [4, 5], True),
        ([1, 2, 9, 4, 5, 6], [7], True),
    ]  # the history was rewritten
    rows = sft_rows([[], turns], "whole")  # an episode without expert moves gives no row
    assert [(r.prompt_ids, r.response_ids, r.loss_mask, n) for r, n in rows] == [
        ([1, 2, 3], [4, 5], [1, 1], 1),
        ([1, 2, 9, 4, 5, 6], [7], [1], 1),
    ]


def test_batches_hold_up_to_batch_size_turns_and_every_row_once_an_epoch():
    import random

    ones = sft_batches([1] * 10, 4, 2, random.Random(0))
    old = random.Random(0)  # one turn a row: the plain shuffle-and-slice of the per_turn layout
    for batches in ones:
        order = list(range(10))
        old.shuffle(order)
        assert batches == [order[i : i + 4] for i in range(0, 10, 4)]
    turns = [1, 2, 2, 1, 3, 1, 2, 5]
    for batches in sft_batches(turns, 4, 3, random.Random(1)):
        assert sorted(r for b in batches for r in b) == list(range(len(turns)))
        for batch in batches:
            assert sum(turns[r] for r in batch) <= 4 or len(batch) == 1
            assert batch


def test_detours_stay_in_the_history_but_are_not_trained_on(policy):
    _, tokenizer = policy
    cfg = RolloutConfig(group_size=1, max_turns=12, history_turns=12)
    seeds = list(range(20))
    plain = expert_trajectories(tokenizer, CorridorEnv, seeds, cfg)
    detoured = expert_trajectories(tokenizer, CorridorEnv, seeds, cfg, detour_rate=0.4)
    changed = 0
    for pairs, plain_pairs in zip(detoured, plain, strict=True):
        for prompt, response in pairs:  # every trained response is the expert's move in its state
            text = tokenizer.decode(prompt)
            position = int(re.findall(r"You are at cell (\d+) of", text)[-1])
            goal = int(re.search(r"exit at cell (\d+)", text).group(1))
            expert = "left" if goal < position else "right"
            assert f"<action>{expert}</action>" in tokenizer.decode(response)
        changed += pairs != plain_pairs
    assert changed > 0  # some episodes took detours, and the expert recovered from them


def _expert_loss(model, tokenizer, cfg):
    pairs = [
        p for episode in expert_trajectories(tokenizer, CorridorEnv, SEEDS, cfg) for p in episode
    ]
    samples = [Sample(p, r, [1] * len(r), [0.0] * len(r), 0, i) for i, (p, r) in enumerate(pairs)]
    batch = collate_samples(samples, tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    return float(-(logp * batch.loss_mask).sum() / batch.loss_mask.sum())


def test_a_few_sft_steps_lower_the_response_loss(policy):
    model, tokenizer = policy
    cfg = RolloutConfig()
    before = _expert_loss(model, tokenizer, cfg)
    seen = []
    stats = run_sft(
        model,
        tokenizer,
        CorridorEnv,
        SEEDS,
        cfg,
        SFTConfig(epochs=3, batch_size=8, lr=3e-3),
        seed=0,
        progress=seen.append,
    )
    after = _expert_loss(model, tokenizer, cfg)
    assert after < 0.5 * before
    assert stats["steps"] == len(seen) == stats["planned_steps"]
    assert stats["expert_success_rate"] == 1.0 and stats["episodes"] == len(SEEDS)
    assert stats["loss_last"] < stats["loss_first"]
    assert stats["tokens_per_s"] > 0 and model.training


def test_max_seconds_stops_early(policy):
    model, tokenizer = policy
    stats = run_sft(
        model,
        tokenizer,
        CorridorEnv,
        SEEDS,
        RolloutConfig(),
        SFTConfig(epochs=50, batch_size=2, max_seconds=1e-9),
        seed=0,
    )
    assert stats["steps"] == 1 and stats["stopped_early"]


def test_corpus_covers_the_env_text():
    texts = list(sft_corpus_texts(CorridorEnv, range(12)))
    joined = "\n".join(texts)
    assert texts[0] == CorridorEnv.system_prompt
    assert "Task: Reach the exit at cell" in joined
    assert "Current observation:\nYou are at cell" in joined
    assert "Admissible actions: left, right" in joined
    assert "<think></think><action>left</action>" in joined
    assert INVALID_ACTION_FEEDBACK in joined  # junk responses were played too
    assert texts == list(sft_corpus_texts(CorridorEnv, range(12)))  # deterministic
