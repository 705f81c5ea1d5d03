"""The trainer's side of a separate generation engine: old log-probs recomputed with the training
model (the engine's kept as behaviour log-probs) and the TIS weights acting on the gradient."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from spear_toy_env import EndsEarly
from test_update import GradCapture

from spear_rl.algos.losses import PolicyLossConfig
from spear_rl.models.forward import token_logprobs
from spear_rl.rollout import RolloutConfig, run_rollout
from spear_rl.rollout.batch import collate_samples
from spear_rl.rollout.sample import Sample
from spear_rl.train.rollout_engine import recompute_old_logprobs
from spear_rl.train.update import LossSpec, UpdateSettings, policy_update

SAMPLES_FROM_POLICY = SimpleNamespace(shares_weights=True)  # the hf engine in fp32
OWN_WEIGHTS = SimpleNamespace(shares_weights=False)  # vLLM, the hf engine's bf16 copy


def _samples(tok, model, shift: float):
    """Two samples whose recorded (engine) log-probs are the model's own plus `shift`."""
    out = []
    for i, (text, adv) in enumerate([("<action>up</action>", 1.0), ("left left", -0.5)]):
        prompt, response = tok("grid ###").input_ids, tok(text).input_ids
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logp, _ = token_logprobs(model, ids, torch.ones_like(ids))
        own = logp[0, len(prompt) :].tolist()
        out.append(
            Sample(
                prompt, response, [1] * len(response), [x + shift for x in own], 0, i, advantage=adv
            )
        )
    return out


def _settings(tok, tis_cap: float) -> UpdateSettings:
    spec = LossSpec("vanilla", PolicyLossConfig(tis_cap=tis_cap), "seq-mean-token-sum", t_norm=16)
    return UpdateSettings(spec, spec, 0, 1, 1, 0, 1.0, "joint", 0.0, 1.0, tok.pad_token_id)


def test_old_logprobs_are_recomputed_and_the_engines_kept(tiny):
    model, tok = tiny
    samples = _samples(tok, model, shift=-0.3)  # the engine's numbers differ from the trainer's
    engine_lp = [list(s.old_logprobs) for s in samples]
    assert recompute_old_logprobs(SAMPLES_FROM_POLICY, model, samples, _settings(tok, 0)) == {}
    assert [s.old_logprobs for s in samples] == engine_lp  # hf records the training model's own
    metrics = recompute_old_logprobs(OWN_WEIGHTS, model, samples, _settings(tok, 0))
    assert metrics["engine/old_logprob_gap_mean"] == pytest.approx(0.3, abs=1e-5)
    batch = collate_samples(samples, tok.pad_token_id)
    with torch.no_grad():
        fresh, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    assert ((fresh - batch.old_logprobs) * batch.loss_mask).abs().max() < 1e-6
    assert [s.behaviour_logprobs for s in samples] == engine_lp


def _grads(model, samples, settings):
    opt = GradCapture(model.parameters())
    policy_update(model, opt, samples, None, 0.0, settings, torch.Generator().manual_seed(0))
    (step,) = opt.captured
    return step


@pytest.mark.parametrize(("cap", "scale"), [(0.0, 1.0), (1.5, 1.5), (3.0, 2.0)])
def test_tis_scales_each_tokens_gradient_by_the_capped_ratio(tiny, cap, scale):
    model, tok = tiny
    on_policy = _samples(tok, model, shift=0.0)
    plain = _grads(model, on_policy, _settings(tok, 0.0))
    # the engine found every token half as likely as the trainer does: ratio 2, capped at `cap`
    mismatched = [
        dataclasses.replace(s, behaviour_logprobs=[x - math.log(2) for x in s.old_logprobs])
        for s in on_policy
    ]
    weighted = _grads(model, mismatched, _settings(tok, cap))
    for a, b in zip(plain, weighted, strict=True):
        assert torch.allclose(b, scale * a, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("layout", ["per_turn", "whole"])
def test_hf_rollout_with_kv_reuse_records_the_training_models_logprobs(tiny, layout):
    """With rollout.kv_reuse the recorded log-probs still equal the training model's full
    forward (the update's pi_old), episodes ending at different turns, prompts left-padded."""
    model, tok = tiny
    cfg = RolloutConfig(
        group_size=3, max_turns=3, max_response_tokens=8, layout=layout, kv_reuse=True
    )
    result = run_rollout(model, tok, EndsEarly, [0, 1, 2, 4], cfg, seed=0)
    assert len({len(t.turns) for t in result.trajectories}) == 3
    assert result.stats["prefill_tokens"] < result.stats["prefill_tokens_full"]
    metrics = recompute_old_logprobs(OWN_WEIGHTS, model, result.samples, _settings(tok, 0))
    assert metrics["engine/old_logprob_gap_max"] < 1e-4


def test_a_bf16_update_recomputes_old_logprobs_in_its_own_arithmetic(tiny):
    """With train.precision=bfloat16 even the fp32 hf engine's log-probs are not what the update
    computes: pi_old is recomputed under bf16 autocast, so the first ratio is 1 up to the rounding
    of two bf16 forward passes (the update's runs in train mode, so it may group rows otherwise)."""
    model, tok = tiny
    samples = _samples(tok, model, shift=0.0)  # the fp32 policy's own log-probs
    fp32 = [list(s.old_logprobs) for s in samples]
    settings = dataclasses.replace(_settings(tok, 0), precision="bfloat16")
    metrics = recompute_old_logprobs(SAMPLES_FROM_POLICY, model, samples, settings)
    assert 0 < metrics["engine/old_logprob_gap_mean"] < 0.1  # bf16 rounding, no more
    assert [s.behaviour_logprobs for s in samples] == fp32
    batch = collate_samples(samples, tok.pad_token_id)
    model.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        update_side, _ = token_logprobs(
            model, batch.input_ids, batch.attention_mask, score_mask=batch.loss_mask
        )
    mask = batch.loss_mask

    def gap(logp):
        return float(((logp - batch.old_logprobs) * mask).abs().sum() / mask.sum())

    fp32_gap = gap(collate_samples(_samples(tok, model, 0.0), tok.pad_token_id).old_logprobs)
    assert gap(update_side) < fp32_gap / 10  # pi_old is the bf16 update's, not the fp32 sampler's


def test_a_bf16_update_keeps_fp32_gradients_close_to_the_fp32_ones(tiny):
    model, tok = tiny
    samples = _samples(tok, model, shift=0.0)
    want = _grads(model, samples, _settings(tok, 0))
    settings = dataclasses.replace(_settings(tok, 0), precision="bfloat16")
    recompute_old_logprobs(SAMPLES_FROM_POLICY, model, samples, settings)
    got = _grads(model, samples, settings)
    assert all(g.dtype == torch.float32 for g in got)  # fp32 master weights and gradients
    flat = [torch.cat([g.flatten() for g in grads]) for grads in (got, want)]
    assert torch.nn.functional.cosine_similarity(*flat, dim=0) > 0.99
