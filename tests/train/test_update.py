"""SPEAR's replay term changes the gradient exactly as spec §6 says, on a hand-made batch.

joint: grad = grad L_on + c(t) * grad L_replay, where the replay samples carry the recalibrated
advantage A' = R - P50(history means) and their stored behaviour log-probs.
"""

import copy
import dataclasses

import pytest
import torch

from spear_rl.algos.losses import PolicyLossConfig
from spear_rl.algos.replay import ReplayBuffer, ReplayConfig, ReplayItem
from spear_rl.rollout.sample import Sample
from spear_rl.train.update import (
    LossSpec,
    UpdateSettings,
    even_parts,
    micro_batch_rows,
    policy_update,
)


class GradCapture(torch.optim.Optimizer):
    """An 'optimiser' that records the gradients it is asked to apply and leaves the weights alone."""

    def __init__(self, params):
        super().__init__(params, {})
        self.captured: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.captured.append([p.grad.clone() for g in self.param_groups for p in g["params"]])


def make_sample(tok, model, text, advantage, traj_id, reward=0.0):
    prompt = tok("grid ###").input_ids
    response = tok(text).input_ids
    with torch.no_grad():
        ids = torch.tensor([prompt + response])
        logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
    old = logp[len(prompt) - 1 :].tolist()  # on-policy: behaviour log-probs = current ones
    return Sample(
        prompt,
        response,
        [1] * len(response),
        old,
        group_id=0,
        traj_id=traj_id,
        advantage=advantage,
        reward=reward,
    )


def settings(tok, replay_update="joint"):
    spec = LossSpec("vanilla", PolicyLossConfig(), "seq-mean-token-sum", t_norm=16)
    return UpdateSettings(
        on_policy=spec,
        replay=spec,
        mini_batch_size=0,
        micro_batch_size=1,
        ppo_epochs=1,
        replay_batch=0,
        replay_ratio=1.0,
        replay_update=replay_update,
        grad_clip=0.0,
        temperature=1.0,
        pad_token_id=tok.pad_token_id,
    )


def grads(model, samples, draw, coef, tok, replay_update="joint"):
    opt = GradCapture(model.parameters())
    policy_update(
        model,
        opt,
        samples,
        draw,
        coef,
        settings(tok, replay_update),
        torch.Generator().manual_seed(0),
    )
    assert len(opt.captured) >= 1
    return opt.captured


def test_joint_replay_adds_coef_times_recalibrated_replay_gradient(tiny):
    model, tok = tiny
    on = [
        make_sample(tok, model, "<action>up</action>", 1.0, 0),
        make_sample(tok, model, "<action>left</action>", -1.0, 1),
    ]
    old_win = make_sample(tok, model, "<action>down</action>", 0.7, 9, reward=3.0)

    buffer = ReplayBuffer(ReplayConfig(tolerate_steps=5), seed=0)
    buffer.record_baselines([0.0, 1.0, 2.0], [0.0, 0.0, 0.0])  # P50 of means = 1 (by hand)
    buffer.admit([ReplayItem(payload=old_win, reward=3.0, advantage=0.7, step=1, group_id=0)])
    drawn = buffer.draw(4, step=2)
    assert [(item.payload.traj_id, adv) for item, adv in drawn] == [
        (9, pytest.approx(2.0))
    ]  # A' = 3 - 1

    def draw(_n):
        return [(item.payload, adv) for item, adv in drawn]

    coef = 0.25
    (g_joint,) = grads(model, on, draw, coef, tok)
    (g_on,) = grads(model, on, None, coef, tok)
    # the replay sample alone, trained with the recalibrated advantage A' = 2
    (g_rep,) = grads(model, [dataclasses.replace(old_win, advantage=2.0)], None, 1.0, tok)
    for a, b, c in zip(g_joint, g_on, g_rep, strict=True):
        torch.testing.assert_close(a, b + coef * c, rtol=1e-5, atol=1e-7)
    # the stored advantage (0.7) is not what trains: at ratio 1 the gradient is linear in A
    (g_stored,) = grads(model, [old_win], None, 1.0, tok)
    for c, s in zip(g_rep, g_stored, strict=True):
        torch.testing.assert_close(c, s * (2.0 / 0.7), rtol=1e-3, atol=1e-5)
    # replay off (coefficient 0 early in the curriculum) leaves the on-policy gradient untouched
    (g_zero,) = grads(model, on, draw, 0.0, tok)
    for a, b in zip(g_zero, g_on, strict=True):
        torch.testing.assert_close(a, b)


def test_separate_replay_takes_extra_optimizer_steps(tiny):
    model, tok = tiny
    on = [make_sample(tok, model, "<action>up</action>", 1.0, 0)]
    win = make_sample(tok, model, "<action>down</action>", 0.5, 9, reward=2.0)
    captured = grads(model, on, lambda n: [(win, 2.0)], 0.5, tok, replay_update="separate")
    assert len(captured) == 2  # one on-policy step, then one replay step scaled by c(t)
    (g_rep,) = grads(model, [dataclasses.replace(win, advantage=2.0)], None, 1.0, tok)
    for a, b in zip(captured[1], g_rep, strict=True):
        torch.testing.assert_close(a, 0.5 * b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("count", "mini_batch", "expected_draw"),
    [
        (4, 0, 4),  # the whole batch is the one mini-batch
        (5, 4, 3),  # split 3 + 2, not 4 + 1: the draw matches the largest part actually taken
        (4, 4, 4),
    ],
)
def test_separate_replay_draws_one_actual_mini_batchs_worth(tiny, count, mini_batch, expected_draw):
    model, tok = tiny
    on = [make_sample(tok, model, "<action>up</action>", (-1.0) ** i, i) for i in range(count)]
    win = make_sample(tok, model, "<action>down</action>", 0.5, 9, reward=2.0)
    asked: list[int] = []

    def draw(n):
        asked.append(n)
        return [(win, 2.0)] * n

    cfg = dataclasses.replace(
        settings(tok, replay_update="separate"), replay_ratio=1.0, mini_batch_size=mini_batch
    )
    out = policy_update(
        model, GradCapture(model.parameters()), on, draw, 1.0, cfg, torch.Generator().manual_seed(0)
    )
    assert asked == [expected_draw]
    assert out["replay/replayed"] == expected_draw


def test_a_small_step_raises_winners_and_lowers_losers(tiny):
    """The whole update path has the right sign: after one small AdamW step, responses with A > 0
    are more likely and responses with A < 0 less likely than before. (Advantages sum to 0, as in a
    group, so the format tokens the three share get no net push.)"""
    model, tok = tiny
    model = copy.deepcopy(model)
    texts = ["<action>up</action>", "<action>down</action>", "<action>left</action>"]
    samples = [
        make_sample(tok, model, text, advantage, traj_id=i)
        for i, (text, advantage) in enumerate(zip(texts, [1.0, -0.5, -0.5], strict=True))
    ]

    def response_logp(sample):
        ids = torch.tensor([sample.prompt_ids + sample.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])
        return float(logp[len(sample.prompt_ids) - 1 :].sum())

    before = [response_logp(s) for s in samples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    policy_update(model, optimizer, samples, None, 0.0, settings(tok), torch.Generator())
    change = [response_logp(s) - b for s, b in zip(samples, before, strict=True)]
    assert change[0] > 0 and change[1] < 0 and change[2] < 0, change


@pytest.mark.parametrize(
    ("count", "max_size", "sizes"),
    [
        (0, 3, []),
        (4, 0, [4]),  # 0 = the whole batch in one step
        (4, 3, [2, 2]),  # not 3 + 1: a one-sample step would be mostly noise
        (456, 64, [57] * 8),
        (10, 3, [2, 3, 3, 2]),
    ],
)
def test_even_parts_splits_into_fewest_near_equal_mini_batches(count, max_size, sizes):
    parts = even_parts(list(range(count)), max_size)
    assert [len(p) for p in parts] == sizes
    assert [i for p in parts for i in p] == list(range(count))  # every sample once, in order


@pytest.mark.parametrize(
    ("replay_batch", "replay_ratio", "mini_batch", "expected"),
    [
        (0, 1.0, 0, [4]),  # the spec: one on-policy mini-batch's worth (the whole batch here)
        (0, 0.25, 0, [1]),  # ceil(0.25 * 4)
        (0, 0.5, 3, [1, 1]),  # at most 3 per mini-batch: two of 2 samples, ceil(0.5 * 2) each
        (0, 0.5, 1, [1, 1, 1, 1]),  # four mini-batches of one sample
        (5, 0.25, 0, [5]),  # an explicit replay_batch wins over the ratio
    ],
)
def test_replay_draw_size_follows_ratio_of_each_mini_batch(
    tiny, replay_batch, replay_ratio, mini_batch, expected
):
    model, tok = tiny
    on = [make_sample(tok, model, "<action>up</action>", (-1.0) ** i, i) for i in range(4)]
    win = make_sample(tok, model, "<action>down</action>", 0.5, 9, reward=2.0)
    asked: list[int] = []

    def draw(n):
        asked.append(n)
        return [(win, 2.0)]

    cfg = dataclasses.replace(
        settings(tok),
        replay_batch=replay_batch,
        replay_ratio=replay_ratio,
        mini_batch_size=mini_batch,
    )
    opt = GradCapture(model.parameters())
    out = policy_update(model, opt, on, draw, 1.0, cfg, torch.Generator().manual_seed(0))
    assert asked == expected
    assert out["replay/replayed"] == len(expected)  # each draw returned the one stored win
    assert out["time/update_replay"] > 0.0
    no_replay = policy_update(model, opt, on, None, 1.0, cfg, torch.Generator().manual_seed(0))
    assert no_replay["time/update_replay"] == 0.0


@pytest.mark.parametrize("loss", ["vanilla", "clip_cov", "kl_cov", "gpg"])
def test_micro_batch_size_changes_neither_loss_nor_gradient(tiny, loss):
    """Micro-batches only bound memory (spec §4, §5): clip_cov / kl_cov choose their tokens over the
    whole mini-batch, so splitting it 1 / 2 / 5 ways gives the unsplit loss and gradient."""
    model, tok = tiny
    texts = [
        "<action>up</action>",
        "<think>left</think><action>down</action>",
        "<action>left</action> up",
        "down down <action>right</action>",
        "<think></think><action>up</action> left right",
        "right",
    ]
    noise = torch.Generator().manual_seed(1)
    samples = []
    for i, text in enumerate(texts):
        sample = make_sample(tok, model, text, advantage=float(i % 3) - 0.8, traj_id=i)
        # behaviour log-probs off the current ones, so ratios differ from 1 (kl_cov's penalty acts)
        shift = 0.15 * torch.randn(len(sample.old_logprobs), generator=noise)
        samples.append(
            dataclasses.replace(
                sample, old_logprobs=(torch.tensor(sample.old_logprobs) + shift).tolist()
            )
        )
    # wide covariance bounds and a 20% budget, so every split would pick differently per part
    params = PolicyLossConfig(
        clip_cov_ratio=0.2, clip_cov_lb=-100.0, clip_cov_ub=100.0, kl_cov_ratio=0.2
    )
    results = {}
    for micro in (1, 2, 5, 0):
        spec = LossSpec(loss, params, "seq-mean-token-sum", t_norm=16)
        cfg = dataclasses.replace(settings(tok), on_policy=spec, micro_batch_size=micro)
        opt = GradCapture(model.parameters())
        out = policy_update(model, opt, samples, None, 0.0, cfg, torch.Generator().manual_seed(7))
        results[micro] = (out, opt.captured[0])
    whole, whole_grads = results[0]
    if loss in ("clip_cov", "kl_cov"):
        assert whole["actor/selected_tokens"] >= 2  # a real selection, not the budget's floor of 1
    for micro in (1, 2, 5):
        out, grads_ = results[micro]
        assert out["actor/loss"] == pytest.approx(whole["actor/loss"], abs=1e-6)
        assert out.get("actor/selected_tokens") == whole.get("actor/selected_tokens")
        for a, b in zip(grads_, whole_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("agg", "scale"), [("seq-mean-token-sum", 2 / 3), ("token-mean", 1.0)])
def test_a_filtered_sample_still_counts_in_B(tiny, agg, scale):
    """Spec §3.5: a filter zeroes the sample's loss mask, so seq-mean-* modes divide by B = all three
    samples, while token-mean (which counts tokens) is unchanged."""
    from spear_rl.rollout.sample import Trajectory
    from spear_rl.train.config import AlgoConfig
    from spear_rl.train.scoring import score_batch

    model, tok = tiny
    texts = ["<action>up</action>", "<action>left</action>", "left left"]
    trajectories = []
    for i, (text, reward) in enumerate(zip(texts, [1.0, 0.0, 0.0], strict=True)):
        sample = make_sample(tok, model, text, 0.0, traj_id=i)
        sample.parsed = i < 2  # the third is a void turn: the incomplete filter fires
        traj = Trajectory(group_id=0, traj_id=i, task_seed=0, task="t", samples=[sample])
        traj.episode_reward = reward
        trajectories.append(traj)
    cfg = AlgoConfig(filter_incomplete=True, group_filter_ratio=1.0, invalid_penalty=0.0)
    scored = score_batch(trajectories, cfg, toolcall_weight=0.0)
    assert len(scored.train) == 3 and not any(scored.train[2].loss_mask)

    spec = LossSpec("vanilla", PolicyLossConfig(), agg, t_norm=16)
    upd = dataclasses.replace(settings(tok), on_policy=spec)

    def grads_of(samples):
        opt = GradCapture(model.parameters())
        policy_update(model, opt, samples, None, 0.0, upd, torch.Generator().manual_seed(0))
        return opt.captured[0]

    with_filtered = grads_of(scored.train)
    kept_only = grads_of(scored.train[:2])
    assert max(float(g.abs().max()) for g in kept_only) > 1e-2  # far above the tolerance
    for a, b in zip(with_filtered, kept_only, strict=True):
        # the two runs shuffle differently, so sums differ in order: float32 rounding only
        torch.testing.assert_close(a, scale * b, rtol=1e-5, atol=1e-6)


def test_cov_scope_micro_batch_lets_each_micro_batch_pick_alone(tiny):
    """algo.cov_scope=micro_batch reproduces the reference: every micro-batch takes its own
    max(1, floor(r N)) budget, so micro-batches of one sample pick one token each."""
    model, tok = tiny
    texts = ["<action>up</action>", "<action>left</action> up", "down <action>right</action>"]
    samples = [make_sample(tok, model, t, float(i) - 1.0, traj_id=i) for i, t in enumerate(texts)]
    picked = {}
    for scope in ("mini_batch", "micro_batch"):
        spec = LossSpec("kl_cov", PolicyLossConfig(cov_scope=scope), "seq-mean-token-sum", 16)
        cfg = dataclasses.replace(settings(tok), on_policy=spec, micro_batch_size=1)
        opt = GradCapture(model.parameters())
        out = policy_update(model, opt, samples, None, 0.0, cfg, torch.Generator().manual_seed(0))
        picked[scope] = out["actor/selected_tokens"]
    assert picked == {"mini_batch": 1.0, "micro_batch": 3.0}  # r = 2e-4: the budget's floor of 1


def test_replay_term_has_its_own_entropy_bonus_and_kl_cov_ratio():
    from spear_rl.train.config import load_config
    from spear_rl.train.settings import update_settings

    class Tok:
        pad_token_id = 0

    cfg = load_config("sokoban/spear")
    s = update_settings(cfg, Tok())
    assert (s.replay.entropy_coef, s.on_policy.entropy_coef) == (0.001, 0.0)
    assert (s.replay.params.kl_cov_ratio, s.on_policy.params.kl_cov_ratio) == (0.02, 2e-4)
    assert s.replay.kl_coef == 0.0  # never a reference KL on replay
    cfg = load_config("sokoban/spear", {"replay": {"entropy_coef": 0.0, "kl_cov_ratio": 0.5}})
    s = update_settings(cfg, Tok())
    assert (s.replay.entropy_coef, s.replay.params.kl_cov_ratio) == (0.0, 0.5)


def test_the_replay_entropy_bonus_reaches_the_gradient(tiny):
    model, tok = tiny
    on = [make_sample(tok, model, "<action>up</action>", 1.0, 0)]
    win = make_sample(tok, model, "<action>down</action>", 0.5, 9, reward=2.0)

    def joint_grads(entropy_coef):
        spec = LossSpec("vanilla", PolicyLossConfig(), "seq-mean-token-sum", 16)
        replay = dataclasses.replace(spec, entropy_coef=entropy_coef)
        cfg = dataclasses.replace(settings(tok), on_policy=spec, replay=replay)
        opt = GradCapture(model.parameters())
        policy_update(
            model, opt, on, lambda n: [(win, 2.0)], 0.5, cfg, torch.Generator().manual_seed(0)
        )
        return opt.captured[0]

    without, with_bonus = joint_grads(0.0), joint_grads(0.3)
    assert max(float((a - b).abs().max()) for a, b in zip(with_bonus, without, strict=True)) > 1e-6


def test_micro_batches_are_sorted_by_length_and_keep_a_prompts_copies_together(tiny):
    model, tok = tiny
    long_prompt, short_prompt = tok("grid ### up up").input_ids, tok("grid").input_ids

    def sample(prompt, reply):
        response = tok(reply).input_ids
        return Sample(prompt, response, [1] * len(response), [0.0] * len(response), 0, 0)

    samples = [
        sample(long_prompt, "up"),
        sample(short_prompt, "up left right down"),
        sample(long_prompt, "up left right down"),
        sample(short_prompt, "up"),
    ]
    assert micro_batch_rows(samples, 2) == [[3, 1], [0, 2]]
    assert micro_batch_rows(samples, 0) == [[0, 1, 2, 3]]  # one micro-batch: order kept


@pytest.mark.parametrize("loss", ["vanilla", "clip_cov", "kl_cov"])
def test_sorting_micro_batches_changes_neither_loss_nor_gradient(tiny, loss, monkeypatch):
    """Rows sorted by length into micro-batches pad less, yet give the loss and gradient of the
    samples taken in their own order: clip_cov / kl_cov choose tokens in sample order."""
    import spear_rl.train.update as update

    model, tok = tiny
    texts = ["<action>up</action> left right down up", "up", "<think>left</think> down", "right"]
    prompts = ["grid ### up", "grid", "grid ### up", "grid"]
    noise = torch.Generator().manual_seed(3)
    samples = []
    for i, (text, prompt) in enumerate(zip(texts * 2, prompts * 2, strict=True)):
        s = make_sample(tok, model, text, advantage=float(i % 3) - 0.9, traj_id=i)
        s.prompt_ids = tok(prompt).input_ids
        shift = 0.2 * torch.randn(len(s.old_logprobs), generator=noise)
        samples.append(
            dataclasses.replace(s, old_logprobs=(torch.tensor(s.old_logprobs) + shift).tolist())
        )
    params = PolicyLossConfig(
        clip_cov_ratio=0.3, clip_cov_lb=-100.0, clip_cov_ub=100.0, kl_cov_ratio=0.3
    )
    spec = LossSpec(loss, params, "token-mean", t_norm=16)
    cfg = dataclasses.replace(settings(tok), on_policy=spec, micro_batch_size=3)

    def run():
        opt = GradCapture(model.parameters())
        out = policy_update(model, opt, samples, None, 0.0, cfg, torch.Generator().manual_seed(5))
        return out, opt.captured[0]

    padded = []
    real_collate = update.collate_samples
    monkeypatch.setattr(
        update, "collate_samples", lambda s, pad: padded.append(real_collate(s, pad)) or padded[-1]
    )
    sorted_out, sorted_grads = run()
    sorted_width = sum(b.input_ids.numel() for b in padded)
    padded.clear()
    monkeypatch.setattr(  # the order before sorting: the samples as drawn
        update,
        "micro_batch_rows",
        lambda s, m: [list(range(len(s)))[i : i + m] for i in range(0, len(s), m)],
    )
    plain_out, plain_grads = run()
    assert sorted_width < sum(b.input_ids.numel() for b in padded)  # sorting padded less
    if loss != "vanilla":
        assert sorted_out["actor/selected_tokens"] >= 2
        assert sorted_out["actor/selected_tokens"] == plain_out["actor/selected_tokens"]
    assert sorted_out["actor/loss"] == pytest.approx(plain_out["actor/loss"], abs=1e-6)
    for a, b in zip(sorted_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
