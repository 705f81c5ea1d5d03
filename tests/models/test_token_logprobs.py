"""token_logprobs: hand-computed values, padding, temperature, entropy, and its fast paths."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from spear_toy_env import corridor_corpus, tiny_policy

import spear_rl.models.forward as forward
from spear_rl.models import ModelConfig, load_policy, positions_from_mask, token_logprobs


class BigramLM(torch.nn.Module):
    """logits at position i depend only on token i: a model whose log-probs are easy by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())
        self.config = SimpleNamespace(model_type="bigram-test", vocab_size=table.shape[1])

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])


LN2, LN3 = math.log(2), math.log(3)
TABLE = torch.tensor([[0.0, 0.0, 0.0], [0.0, LN2, 0.0], [0.0, LN3, 0.0]])
# p(. | 0) = 1/3 each; p(. | 1) = (1/4, 1/2, 1/4); p(. | 2) = (1/5, 3/5, 1/5)
IDS = torch.tensor([[0, 1, 2, 1], [1, 1, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


def test_hand_computed_logprobs_and_padding():
    logp, entropy = token_logprobs(BigramLM(TABLE), IDS, MASK)
    assert entropy is None
    expected = torch.tensor(
        [[0.0, math.log(1 / 3), math.log(1 / 4), math.log(3 / 5)], [0.0, math.log(1 / 2), 0.0, 0.0]]
    )
    assert torch.allclose(logp, expected, atol=1e-6)


def test_hand_computed_temperature_and_entropy():
    logp, entropy = token_logprobs(BigramLM(TABLE), IDS, MASK, temperature=2.0, with_entropy=True)
    s2 = math.sqrt(2)
    # logits / 2 after token 1: (0, ln2 / 2, 0) -> p = (1, sqrt2, 1) / (2 + sqrt2)
    assert logp[1, 1].item() == pytest.approx(math.log(s2 / (2 + s2)), abs=1e-6)
    assert logp[0, 1].item() == pytest.approx(math.log(1 / 3), abs=1e-6)
    assert entropy[0, 1].item() == pytest.approx(LN3, abs=1e-6)  # uniform over 3
    p = torch.tensor([1, s2, 1]) / (2 + s2)
    assert entropy[0, 2].item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)
    assert entropy[:, 0].abs().sum() == 0 and entropy[1, 2:].abs().sum() == 0


def test_gradients_flow_to_the_model():
    model = BigramLM(TABLE)
    logp, _ = token_logprobs(model, IDS, MASK)
    logp.sum().backward()
    # d/dtable[1, 1] of log p(1|1) = 1 - p(1|1) = 1/2 ; token 1 predicts position 2 (token 2) too
    assert model.table.grad is not None and model.table.grad.abs().sum() > 0


def test_positions_count_attended_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


def _right_padded_batch(tokenizer, n_rows=6, prefix_len=40):
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(5, len(tokenizer), (prefix_len,), generator=g)
    rows = [
        torch.cat([prefix, torch.randint(5, len(tokenizer), (3 + 4 * i,), generator=g)])
        for i in range(n_rows)
    ]
    width = max(len(r) for r in rows)
    ids = torch.full((n_rows, width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


def _grouped_batch(tokenizer):
    """GRPO's shape: 3 prompts of different lengths, 3 replies each, and a row alone; rows shuffled
    so that a group's rows are not adjacent."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for prompt_len in (30, 24, 41):
        prompt = torch.randint(5, len(tokenizer), (prompt_len,), generator=g)
        for reply_len in (2, 5, 9):
            rows.append(
                torch.cat([prompt, torch.randint(5, len(tokenizer), (reply_len,), generator=g)])
            )
    rows.append(torch.randint(5, len(tokenizer), (20,), generator=g))
    rows = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return ids, mask


def _reference(model, ids, mask, temperature):
    """Straight from the definition: one full forward, log_softmax, gather."""
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)
    ).logits
    logp_all = torch.log_softmax(logits[:, :-1] / temperature, -1)
    logp = logp_all.gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
    entropy = -(logp_all.exp() * logp_all).sum(-1) * mask[:, 1:]
    zero = torch.zeros(ids.shape[0], 1)
    return torch.cat([zero, logp], 1), torch.cat([zero, entropy], 1)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _policy_and_batch_for_path(monkeypatch, path: str):
    """The tiny policy and a batch that take `path` through token_logprobs."""
    model, tokenizer = tiny_policy()
    ids, mask = (_grouped_batch if path == "group_prefix" else _right_padded_batch)(tokenizer)
    if path not in ("shared_prefix", "group_prefix"):
        monkeypatch.setattr(forward, "MIN_SHARED_PREFIX", 10**9)
    if path.startswith("chunked"):  # a few positions per chunk
        monkeypatch.setattr(forward, "LOGITS_CHUNK_ELEMENTS", 3 * ids.shape[0] * len(tokenizer))
    if path == "chunked":  # ... recomputed in backward
        monkeypatch.setattr(forward, "KEEP_LOGITS_ELEMENTS", 0)
    groups = forward._prefix_groups(model, ids, mask)
    if path == "shared_prefix":
        assert groups.prefix.tolist() == [40] and groups.group.tolist() == [0] * len(ids)
    elif path == "group_prefix":  # each prompt once, the row alone as its own group
        assert sorted(groups.prefix.tolist()) == [19, 24, 30, 41]
        for g, prefix in enumerate(groups.prefix.tolist()):
            members = ids[groups.group == g, :prefix]
            assert (members == members[:1]).all()
    else:
        assert groups is None
    return model, ids, mask


PATHS = ["shared_prefix", "group_prefix", "plain", "chunked", "chunked_kept"]


@pytest.mark.parametrize("path", PATHS)
def test_fast_paths_match_the_definition(monkeypatch, path):
    model, ids, mask = _policy_and_batch_for_path(monkeypatch, path)

    model.zero_grad()
    want_logp, want_entropy = _reference(model, ids, mask, 0.7)
    (want_logp.sum() + want_entropy.sum()).backward()
    want_grad = _grads(model).clone()

    model.zero_grad()
    logp, entropy = token_logprobs(model, ids, mask, temperature=0.7, with_entropy=True)
    (logp.sum() + entropy.sum()).backward()
    assert torch.allclose(logp, want_logp, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert _relative_error(_grads(model), want_grad) < 1e-5
    model.zero_grad()


def test_kept_and_recomputed_chunks_give_the_same_numbers(monkeypatch):
    """Keeping the LM head's chunks for backward instead of recomputing them changes no bit."""
    model, ids, mask = _policy_and_batch_for_path(monkeypatch, "chunked_kept")
    results = []
    for keep in (0, 10**12):  # recompute every chunk / keep every chunk
        monkeypatch.setattr(forward, "KEEP_LOGITS_ELEMENTS", keep)
        model.zero_grad()
        logp, entropy = token_logprobs(model, ids, mask, temperature=0.7, with_entropy=True)
        (logp.sum() + 0.1 * entropy.sum()).backward()
        results.append((logp.detach(), entropy.detach(), _grads(model).clone()))
    for recomputed, kept in zip(*results, strict=True):
        assert torch.equal(recomputed, kept)


@pytest.mark.parametrize("path", PATHS)
def test_score_mask_scores_only_the_masked_positions(monkeypatch, path):
    model, ids, mask = _policy_and_batch_for_path(monkeypatch, path)
    # a "response" of each row's last 3 tokens, plus one prompt position inside the shared prefix
    score = torch.zeros_like(mask)
    for row, length in enumerate(mask.sum(1).tolist()):
        score[row, length - 3 : length] = 1
    score[0, 20] = 1

    model.zero_grad()
    want_logp, want_entropy = _reference(model, ids, mask, 0.7)
    want_logp, want_entropy = want_logp * score, want_entropy * score
    (want_logp.sum() + want_entropy.sum()).backward()
    want_grad = _grads(model).clone()

    model.zero_grad()
    logp, entropy = token_logprobs(
        model, ids, mask, temperature=0.7, with_entropy=True, score_mask=score
    )
    (logp.sum() + entropy.sum()).backward()
    assert torch.allclose(logp, want_logp, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert (logp[score == 0] == 0).all() and (logp[score == 1] < 0).all()
    assert _relative_error(_grads(model), want_grad) < 1e-5
    model.zero_grad()


def test_score_mask_works_for_full_logits_models_and_for_an_empty_mask():
    model = BigramLM(TABLE)
    score = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])
    logp, _ = token_logprobs(model, IDS, MASK, score_mask=score)
    assert torch.allclose(logp, token_logprobs(model, IDS, MASK)[0] * score, atol=1e-6)
    nothing, entropy = token_logprobs(
        model, IDS, MASK, with_entropy=True, score_mask=torch.zeros_like(MASK)
    )
    assert nothing.abs().sum() == 0 and entropy.abs().sum() == 0
    nothing.sum().backward()  # still part of the graph: an all-masked micro-batch does not crash


def test_gradient_checkpointing_gives_the_same_gradient():
    model, tokenizer = load_policy(ModelConfig(), corpus=corridor_corpus, seed=0)
    checkpointed, _ = load_policy(
        ModelConfig(gradient_checkpointing=True), corpus=corridor_corpus, seed=0
    )
    ids, mask = _right_padded_batch(tokenizer)
    grads = []
    for m in (model, checkpointed):
        logp, _ = token_logprobs(m, ids, mask)
        logp.sum().backward()
        grads.append(_grads(m))
    assert _relative_error(grads[1], grads[0]) < 1e-5


@pytest.mark.parametrize("make_batch", [_right_padded_batch, _grouped_batch])
def test_gradient_checkpointing_model_in_train_mode_without_grad(make_batch):
    # HF's checkpointed layers drop the KV cache whenever the model is in train mode, with or
    # without grad (e.g. clip_cov's token selection scores the policy under no_grad mid-update)
    model, tokenizer = load_policy(
        ModelConfig(gradient_checkpointing=True), corpus=corridor_corpus, seed=0
    )
    model.train()
    ids, mask = make_batch(tokenizer)
    with torch.no_grad():
        want, _ = _reference(model, ids, mask, 0.7)
        logp, _ = token_logprobs(model, ids, mask, temperature=0.7)
    assert torch.allclose(logp, want, atol=1e-5)


class _Vocab:
    """What the batch builders read of a tokenizer."""

    pad_token_id = 0

    def __len__(self) -> int:
        return 100


@pytest.mark.parametrize("scored", [False, True])
@pytest.mark.parametrize("make_batch", [_right_padded_batch, _grouped_batch])
def test_sliding_window_attention_matches_the_definition(make_batch, scored):
    # a window shorter than the rows: padding between a group's short prefix and a row's rest
    # must not take the place of real tokens in the window
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=0,  # every layer slides
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    ids, mask = make_batch(_Vocab())
    if make_batch is _right_padded_batch:  # one group leaves no padding inside a row: shared
        assert forward._prefix_groups(model, ids, mask).prefix.tolist() == [40]
    model.zero_grad()
    want, _ = _reference(model, ids, mask, 1.0)
    want.sum().backward()
    want_grad = _grads(model).clone()
    model.zero_grad()
    logp, _ = token_logprobs(model, ids, mask, score_mask=mask if scored else None)
    logp.sum().backward()
    assert torch.allclose(logp, want, atol=1e-5)
    assert _relative_error(_grads(model), want_grad) < 1e-5


def _with_copies(ids, mask):
    """Rows 0 and 2 repeated (a copy of 2 three times), in shuffled order."""
    order = torch.tensor([0, 2, 1, 2, 0, 3, 2, 4, 5])
    return ids[order], mask[order]


@pytest.mark.parametrize("path", PATHS)
def test_copies_of_a_row_are_scored_once(monkeypatch, path):
    model, ids, mask = _policy_and_batch_for_path(monkeypatch, path)
    ids, mask = _with_copies(ids, mask)
    weights = torch.linspace(0.5, 2.0, ids.shape[0])[:, None]  # each copy weighs differently

    model.zero_grad()
    want_logp, want_entropy = _reference(model, ids, mask, 0.7)
    ((want_logp + want_entropy) * weights).sum().backward()
    want_grad = _grads(model).clone()

    rows_seen = []

    def count_rows(_module, args, kwargs):
        rows_seen.append((kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[0])

    decoder = forward._plain_head_parts(model)[0]
    hook = decoder.register_forward_pre_hook(count_rows, with_kwargs=True)
    model.zero_grad()
    logp, entropy = token_logprobs(model, ids, mask, temperature=0.7, with_entropy=True)
    ((logp + entropy) * weights).sum().backward()
    hook.remove()
    assert torch.allclose(logp, want_logp, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert _relative_error(_grads(model), want_grad) < 1e-5
    model.zero_grad()
    assert max(rows_seen) == 6  # the 6 distinct rows of 9


def test_copies_are_found_by_tokens_attention_and_score_mask():
    from spear_rl.models.unique_rows import distinct_rows

    model = BigramLM(TABLE).eval()
    ids = torch.tensor([[0, 1, 2, 0], [0, 1, 2, 0], [0, 1, 2, 0], [1, 1, 0, 0], [0, 1, 2, 0]])
    # row 2 ends one token earlier (its last 0 is padding); row 4 scores another position
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    scored = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0], [0, 1, 1, 1]])
    first, inverse = distinct_rows(model, ids, mask, scored)
    assert len(first) == 4
    assert inverse[0] == inverse[1] and len({int(inverse[i]) for i in (0, 2, 3, 4)}) == 4
    assert (ids[first][inverse] == ids).all()
    assert distinct_rows(model, ids[:1], mask[:1], None) is None
    assert distinct_rows(model, ids[2:4], mask[2:4], None) is None  # all distinct


def test_copies_are_not_merged_under_active_dropout():
    from spear_rl.models.unique_rows import distinct_rows

    model = BigramLM(TABLE)
    ids, mask = IDS[[0, 0]], MASK[[0, 0]]
    assert distinct_rows(model.eval(), ids, mask, None) is not None
    assert distinct_rows(model.train(), ids, mask, None) is not None  # no dropout anywhere
    model.config.attention_dropout = 0.1
    assert distinct_rows(model.train(), ids, mask, None) is None
    assert distinct_rows(model.eval(), ids, mask, None) is not None
    wrapped = torch.nn.Module()  # DDP's shape: the model, its config included, in .module
    wrapped.module = model
    assert distinct_rows(wrapped.train(), ids, mask, None) is None
    model.config.attention_dropout = 0.0
    assert distinct_rows(wrapped.train(), ids, mask, None) is not None
    model.drop = torch.nn.Dropout(0.2)
    assert distinct_rows(model.train(), ids, mask, None) is None


def test_a_shared_prefix_cache_adds_its_rows_gradients_in_index_order():
    """The rows that share a prefix send their gradients back to its one cache row: summed in
    index order every time (transformers' own `keys[index]` summed them in an order that varies
    with thread timing, so two runs of one batch differed in the last bits)."""
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(1, 3, 230, 64, generator=generator, requires_grad=True)
    values = torch.randn(1, 3, 230, 64, generator=generator, requires_grad=True)
    upstream = torch.randn(12, 3, 230, 64, generator=generator)
    cache = DynamicCache()
    cache.update(keys, values, 0)
    forward._select_cache_rows(cache, torch.zeros(12, dtype=torch.long))
    layer = cache.layers[0]
    assert torch.equal(layer.keys, keys.detach().expand(12, -1, -1, -1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs one thread; the timing-dependent order needs two
    try:
        ((layer.keys + layer.values) * upstream).sum().backward()
    finally:
        torch.set_num_threads(threads)
    in_order = torch.zeros_like(keys)
    for row in upstream:
        in_order[0] += row
    assert torch.equal(keys.grad, in_order) and torch.equal(values.grad, in_order)
