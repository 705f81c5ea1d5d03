"""One policy update on a fixed global batch, run by `torchrun` (N ranks) or in-process (1 rank).

`tests/train/test_distributed.py` runs it both ways and compares the parameters it saves: N ranks,
each holding its contiguous share of the batch, must end where one process on the whole batch does.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/dist_update_worker.py \
        OUT grpo_sgd:ddp,spear_adamw:fsdp
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch

from spear_rl.algos.losses import PolicyLossConfig
from spear_rl.algos.replay import ReplayBuffer, ReplayConfig
from spear_rl.models.config import ModelConfig
from spear_rl.models.tiny import build_tiny_model
from spear_rl.models.tokenizer import build_tiny_tokenizer
from spear_rl.rollout.engines.sync import compute_dtype
from spear_rl.rollout.engines.weights import policy_weights
from spear_rl.rollout.sample import Sample
from spear_rl.train.dist_state import load_sharded_optimizer, save_sharded_optimizer
from spear_rl.train.distributed import (
    all_gather_concat,
    global_sum,
    init_distributed,
    my_share,
    reduce_metrics,
    shutdown_distributed,
)
from spear_rl.train.parallel import full_state_dict, wrap_model
from spear_rl.train.update import LossSpec, UpdateSettings, policy_update

WORDS = ["up", "down", "left", "right", "push", "wait"]
# case -> (loss, aggregation, optimiser, lr, updates, mini_batch_size, ppo_epochs, replay)
CASES = {
    "grpo_sgd": ("vanilla", "token-mean", "sgd", 0.5, 1, 0, 1, False),
    "grpo_adamw": ("vanilla", "token-mean", "adamw", 1e-3, 2, 4, 2, False),
    "spear_sgd": ("clip_cov", "seq-mean-token-sum-norm", "sgd", 0.5, 1, 0, 1, True),
    "spear_adamw": ("clip_cov", "seq-mean-token-sum-norm", "adamw", 1e-3, 2, 4, 2, True),
}
NUM_SAMPLES = 11  # odd: the ranks hold 6 and 5, and mini-batches split unevenly between them
NUM_REPLAY = 7


def tiny_policy():
    tok = build_tiny_tokenizer([" ".join(WORDS) + " <action></action> grid ###"] * 20, 300)
    model = build_tiny_model(tok, ModelConfig(tiny_layers=2, tiny_hidden=32, tiny_heads=2), seed=0)
    return model, tok


def make_samples(model, tok, count: int, seed: int) -> list[Sample]:
    """Varied prompts and replies; behaviour log-probs off the current ones so ratios move."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        prompt = tok("grid ### " + " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))).input_ids
        reply = "<action>" + " ".join(rng.choices(WORDS, k=rng.randint(1, 6))) + "</action>"
        response = tok(reply).input_ids
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
            logp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
        old = [v + rng.uniform(-0.3, 0.3) for v in logp[len(prompt) - 1 :].tolist()]
        mask = [1] * len(response)
        mask[0] = 0 if i % 3 == 0 else 1  # some masked tokens inside a reply
        out.append(
            Sample(
                prompt,
                response,
                mask,
                old,
                group_id=min(i // 3, 3),  # groups of 3, 3, 3, 2: none splits over 2 ranks
                traj_id=i,
                advantage=rng.uniform(-2, 2),
                reward=rng.uniform(0, 10),
            )
        )
    return out


def update_settings(case: str, tok) -> UpdateSettings:
    loss, agg, _, _, _, mini_batch, epochs, _ = CASES[case]
    # clip_cov acts on EVERY eligible token at ratio 1, so the pick is the same however the
    # eligible tokens are spread over ranks; the bounds catch some of them in this batch
    params = PolicyLossConfig(clip_cov_ratio=1.0, clip_cov_lb=0.05, clip_cov_ub=5.0)
    spec = LossSpec(loss, params, agg, t_norm=8)
    return UpdateSettings(
        on_policy=spec,
        replay=spec,
        mini_batch_size=mini_batch,
        micro_batch_size=2,
        ppo_epochs=epochs,
        replay_batch=0,
        replay_ratio=0.5,
        replay_update="joint",
        grad_clip=0.0,
        temperature=1.0,
        pad_token_id=tok.pad_token_id,
    )


def run(out: Path, case: str, parallel: str = "ddp") -> None:
    """One case: the update(s), then rank 0 saves the parameters and every rank its record."""
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    model, tok = tiny_policy()
    samples = make_samples(model, tok, NUM_SAMPLES, seed=1)
    replay_pool = make_samples(model, tok, NUM_REPLAY, seed=2)
    mine = my_share(samples, ctx)
    _, _, opt_name, lr, updates, _, _, use_replay = CASES[case]
    train_model = wrap_model(model, ctx, parallel)
    params = [p for p in train_model.parameters() if p.requires_grad]
    optimizer = (
        torch.optim.SGD(params, lr=lr)
        if opt_name == "sgd"
        else torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    )
    # the replay history is global: every rank records every group's mean, in rank order
    buffer = ReplayBuffer(ReplayConfig(), seed=0)
    group_means = {}
    for s in mine:
        group_means.setdefault(s.group_id, []).append(s.reward)
    means = all_gather_concat([sum(v) / len(v) for v in group_means.values()])
    buffer.record_baselines(means, [1.0] * len(means))
    baseline, _ = buffer.baseline()

    def draw(n: int) -> list[tuple[Sample, float]]:
        """This rank's share of the first `total` replay items (total = the global draw)."""
        total = int(global_sum(n))
        drawn = [replay_pool[i % NUM_REPLAY] for i in range(total)]
        return [(s, s.reward - baseline) for s in my_share(drawn, ctx)]

    settings = update_settings(case, tok)
    metrics = []
    for _ in range(updates):
        generator = torch.Generator().manual_seed(0)
        metrics.append(
            policy_update(
                train_model, optimizer, mine, draw if use_replay else None, 0.5, settings, generator
            )
        )
    state = full_state_dict(train_model)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(state, out / "params.pt")
    record = {
        "rank": ctx.rank,
        "history": list(buffer.state_dict()["history_means"]),
        "recalibrated": [s.reward - baseline for s in replay_pool],
        "optimizer_steps": [m["actor/optimizer_steps"] for m in metrics],
        "replayed": [m["replay/replayed"] for m in metrics],
        "selected": sum(m.get("actor/selected_tokens", 0.0) for m in metrics),
        "loss": reduce_metrics(metrics[0])["actor/loss"],  # as logged: over ranks
        "samples": len(mine),
    }
    out.mkdir(parents=True, exist_ok=True)
    if parallel == "fsdp":
        record.update(fsdp_checks(train_model, optimizer, out, ctx.rank))
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(record))


def fsdp_checks(train_model, optimizer, out: Path, rank: int) -> dict:
    """The sharded parts an FSDP run relies on: the engine push's one-at-a-time gather, and the
    optimiser state written by every rank as DCP shards and read back into a fresh optimiser."""
    assert compute_dtype(train_model) == torch.float32  # no mixed precision on the CPU
    streamed = [(name, type(t).__name__) for name, t in policy_weights(train_model)]
    torch.save(dict(policy_weights(train_model)), out / f"streamed{rank}.pt")
    save_sharded_optimizer(train_model, optimizer, out / "optimizer")
    fresh = torch.optim.AdamW(train_model.parameters(), lr=1.0, weight_decay=0.5)
    load_sharded_optimizer(train_model, fresh, out / "optimizer")
    diff, compared = 0.0, 0
    for param in train_model.parameters():
        for key, value in optimizer.state[param].items():
            loaded = fresh.state[param][key]
            local = value.to_local() if hasattr(value, "to_local") else value
            back = loaded.to_local() if hasattr(loaded, "to_local") else loaded
            diff = max(diff, float((local.float() - back.float()).abs().max()))
            compared += local.numel()
    return {
        "streamed_types": sorted({kind for _, kind in streamed}),
        "streamed_names": [name for name, _ in streamed],
        "optimizer_reload_diff": diff,
        "optimizer_values_compared": compared,
        "optimizer_local_numel": sum(
            (v.to_local() if hasattr(v, "to_local") else v).numel()
            for st in optimizer.state.values()
            for v in st.values()
        ),
        "lr_after_reload": [g["lr"] for g in fresh.param_groups],
    }


if __name__ == "__main__":
    for item in sys.argv[2].split(","):  # CASE:PARALLEL, one launch for all (start-up is slow)
        name, parallel = item.split(":")
        run(Path(sys.argv[1]) / f"{name}-{parallel}", name, parallel)
    shutdown_distributed()
