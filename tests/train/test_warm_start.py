"""The SFT warm-start cache: a cached start gives the same run as a fresh one, keyed correctly."""

import pytest
from test_trainer import TINY

from spear_rl.train.config import deep_merge, load_config
from spear_rl.train.metrics import read_metrics
from spear_rl.train.trainer import train
from spear_rl.train.warm_start import sft_cache_key, sft_cache_root, sft_progress_printer

VOLATILE = ("time", "eval/seconds", "sft/seconds", "sft/tokens_per_s")


def config(tmp_path, name, cache, **extra):
    over = deep_merge(
        TINY,
        {
            "train": {"output_dir": str(tmp_path), "run_name": name, "checkpoint_every": 0},
            "sft": {"cache_dir": str(cache)},
        },
    )
    return load_config("sokoban/spear", deep_merge(over, extra))


def comparable(run_dir):
    return {
        r["step"]: {k: v for k, v in r.items() if not k.startswith(VOLATILE)}
        for r in read_metrics(run_dir)
    }


def test_cached_warm_start_gives_the_same_run(tmp_path):
    cache = tmp_path / "cache"
    lines: list[str] = []
    fresh = train(config(tmp_path, "fresh", cache), echo=lines.append)
    assert any("cached in" in line for line in lines)
    (entry,) = [p for p in cache.iterdir()]
    assert (entry / "sft_stats.json").is_file() and (entry / "model").is_dir()

    lines.clear()
    cached = train(config(tmp_path, "cached", cache), echo=lines.append)
    assert any("loaded from the cache" in line for line in lines)
    assert not any("SFT warm start on" in line for line in lines)
    a, b = comparable(fresh.run_dir), comparable(cached.run_dir)
    assert sorted(a) == sorted(b)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5, abs=1e-6), step


def test_cache_key_covers_what_sft_depends_on(tmp_path):
    base = config(tmp_path, "k", tmp_path)
    same_sft_other_algo = config(
        tmp_path, "k", tmp_path, algo={"loss": "vanilla"}, train={"lr": 1e-3}
    )
    assert sft_cache_key(base) == sft_cache_key(same_sft_other_algo)
    other_engine = config(tmp_path, "k", tmp_path, rollout={"engine": "vllm", "vllm_sleep": False})
    assert sft_cache_key(base) == sft_cache_key(other_engine)  # SFT never generates
    # nor samples groups, nor steps envs in workers: keyed by exactly what SFT reads
    other_rollout = config(
        tmp_path,
        "k",
        tmp_path,
        rollout={"group_size": 3, "temperature": 0.7, "generation_batch_size": 8},
        env={"workers": "process", "num_workers": 2},
    )
    assert sft_cache_key(base) == sft_cache_key(other_rollout)
    # where a GGUF conversion is cached changes no weight
    other_model_cache = config(tmp_path, "k", tmp_path, model={"cache_dir": str(tmp_path / "m")})
    assert sft_cache_key(base) == sft_cache_key(other_model_cache)
    for extra in (
        {"train": {"seed": 1}},
        {"sft": {"episodes": 9}},
        {"rollout": {"history_turns": 3}},
        {"env": {"kwargs": {"size": 7}}},
        {"model": {"tiny_layers": 2}},
    ):
        assert sft_cache_key(config(tmp_path, "k", tmp_path, **extra)) != sft_cache_key(base), extra


def test_sft_progress_prints_a_line_per_tenth_of_the_run():
    lines = []
    report = sft_progress_printer(lines.append)
    for step in range(1, 251):
        report({"step": step, "planned_steps": 250, "loss": 1.0 / step, "seconds": step * 0.5})
    assert len(lines) == 11  # step 1, then 25, 50, ..., 250
    assert lines[0].startswith("  SFT step 1/250") and lines[-1].startswith("  SFT step 250/250")
    assert "about 0 s left" in lines[-1]


def test_a_fresh_tiny_policy_keeps_the_envs_terms_whole():
    pytest.importorskip("rank_bm25")
    from spear_rl.train.runtime import make_env_factory
    from spear_rl.train.sft import expert_trajectories
    from spear_rl.train.warm_start import build_policy

    cfg = load_config(
        "webshop/spear", {"env": {"kwargs": {"num_products": 200}}, "sft": {"episodes": 2}}
    )
    factory = make_env_factory(cfg)
    _, tokenizer = build_policy(cfg, factory, None)
    (episode,) = expert_trajectories(tokenizer, factory, [0], cfg.rollout)
    _, click = episode[1]  # the click on a product after the search
    pieces = [tokenizer.decode([i]) for i in click]
    env = factory()
    env.reset(0)
    assert any(piece in env.tokenizer_terms and piece[0] == "B" for piece in pieces), pieces


def test_the_cache_is_on_by_default_in_the_user_cache_folder(monkeypatch, tmp_path):
    assert load_config("sokoban/spear").sft.cache_dir == "auto"
    monkeypatch.delenv("SPEAR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sft_cache_root("auto") == tmp_path / "xdg" / "spear-rl" / "sft"
    monkeypatch.setenv("SPEAR_CACHE_DIR", str(tmp_path / "mine"))
    assert sft_cache_root("auto") == tmp_path / "mine" / "sft"
    monkeypatch.setenv("SPEAR_CACHE_DIR", "off")  # what tests/conftest.py sets for the suite
    assert sft_cache_root("auto") is None
    assert sft_cache_root("off") is None and sft_cache_root("") is None
    assert sft_cache_root(str(tmp_path / "x")) == tmp_path / "x"
