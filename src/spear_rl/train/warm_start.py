"""The policy a run starts from: a fresh model plus the SFT warm start, cached on disk.

SFT is a large share of a short run, and ablations run many presets from the same seed. The
warmed-up model and tokenizer are saved under a key that hashes exactly what SFT reads (the model
section, the env's name and kwargs, the rollout keys that shape prompts, the sft section, the seed,
the package and tokenizer versions), and later runs with the same key load them instead of training
again. The load is exact (safetensors), so a cached start and a fresh one give the same run.
`sft.cache_dir`: `auto` (the default) is `$SPEAR_CACHE_DIR/sft`, else `~/.cache/spear-rl/sft`
(`$XDG_CACHE_HOME` respected); `off` turns the cache off, and `SPEAR_CACHE_DIR=off` does so for
`auto` runs (the test suite sets it, so each test's SFT runs). See `spear_rl/cache_dirs.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

import spear_rl
from spear_rl.cache_dirs import cache_folder, write_entry
from spear_rl.models.loading import load_policy, load_saved_policy, save_policy
from spear_rl.models.tokenizer import TOKENIZER_VERSION
from spear_rl.train.checkpoint import check_free_space, checkpoint_bytes
from spear_rl.train.config import Config
from spear_rl.train.precision import resolve_precision
from spear_rl.train.sft import SFT_ROWS_VERSION, run_sft, sft_corpus_texts

_DONE = "sft_stats.json"  # written last: its presence marks a complete cache entry


def build_policy(cfg: Config, env_factory, checkpoint: Path | None):
    """A fresh policy (the tiny tokenizer trained on env text), or the model of a checkpoint."""
    if checkpoint is not None:
        return load_saved_policy(cfg.model, checkpoint, seed=cfg.train.seed)
    corpus_seeds = range(max(64, cfg.sft.episodes))
    return load_policy(
        cfg.model,
        corpus=lambda: sft_corpus_texts(env_factory, corpus_seeds),
        seed=cfg.train.seed,
        whole_terms=env_tokenizer_terms(env_factory) if cfg.model.name_or_path == "tiny" else (),
    )


def env_tokenizer_terms(env_factory) -> tuple[str, ...]:
    env = env_factory()
    try:
        return tuple(env.tokenizer_terms)
    finally:
        env.close()


def sft_warm_start(model, tokenizer, env_factory, cfg: Config, echo=print) -> dict[str, Any]:
    """SFT on expert episodes of training seeds 0..sft.episodes-1, rendered as the rollout renders."""
    return run_sft(
        model,
        tokenizer,
        env_factory,
        range(cfg.sft.episodes),
        cfg.rollout,
        cfg.sft,
        seed=cfg.train.seed,
        progress=sft_progress_printer(echo) if cfg.log.progress else None,
    )


def sft_progress_printer(echo, parts: int = 10):
    """A `run_sft` progress callback that echoes one line at each tenth of the planned steps:
    a long warm start (an hour on WebShop) shows that it is moving and how fast."""
    next_mark = [1]

    def report(p: dict) -> None:
        if p["step"] * parts < next_mark[0] * p["planned_steps"] and p["step"] != 1:
            return
        while next_mark[0] * p["planned_steps"] <= p["step"] * parts:
            next_mark[0] += 1
        rate = p["step"] / max(p["seconds"], 1e-9)
        left = (p["planned_steps"] - p["step"]) / max(rate, 1e-9)
        echo(
            f"  SFT step {p['step']}/{p['planned_steps']}  loss {p['loss']:.3f}  "
            f"{p['seconds']:.0f} s, about {left:.0f} s left"
        )

    return report


# The rollout keys SFT reads (the episode renderer's and the episode length); the others (group
# size, sampling, engine, batch sizes, timeouts) change no SFT prompt or target.
SFT_ROLLOUT_KEYS = ("max_turns", "history_turns", "layout", "max_prompt_tokens", "show_admissible")


def sft_cache_root(cache_dir: str) -> Path | None:
    """The cache folder `sft.cache_dir` names, or None when caching is off."""
    return cache_folder(cache_dir, "sft")


def sft_cache_key(cfg: Config) -> str:
    rollout = dataclasses.asdict(cfg.rollout)
    sft = {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k != "cache_dir"}
    # `auto` is keyed by what it means on this machine; SFT runs where the model loads, the CPU
    sft["precision"] = resolve_precision(cfg.sft.precision, torch.device("cpu"))
    settings = {
        # where a GGUF conversion is cached changes no weight
        "model": {k: v for k, v in dataclasses.asdict(cfg.model).items() if k != "cache_dir"},
        "env": {"name": cfg.env.name, "kwargs": cfg.env.kwargs},
        "rollout": {k: rollout[k] for k in SFT_ROLLOUT_KEYS},
        "sft": sft,
        "seed": cfg.train.seed,
        "version": spear_rl.__version__,
        "tokenizer": TOKENIZER_VERSION,
        "rows": SFT_ROWS_VERSION,
    }
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def initial_policy(
    cfg: Config, env_factory, echo=print, keep_in: Path | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """`(model, tokenizer, sft_stats)` for a new run: built and warmed up, or loaded from the cache.
    `keep_in`: the run's own copy of the warmed-up policy (written when no cache holds it), so
    that a run stopped before its first checkpoint resumes without redoing SFT; loaded if there."""
    if keep_in is not None and (keep_in / _DONE).is_file():
        echo(f"SFT warm start loaded from the run folder: {keep_in}")
        model, tokenizer = load_saved_policy(cfg.model, keep_in, seed=cfg.train.seed)
        return model, tokenizer, json.loads((keep_in / _DONE).read_text())
    root = sft_cache_root(cfg.sft.cache_dir)
    entry = root / sft_cache_key(cfg) if root is not None else None
    if entry is not None and (entry / _DONE).is_file():
        echo(f"SFT warm start loaded from the cache: {entry}")
        model, tokenizer = load_saved_policy(cfg.model, entry, seed=cfg.train.seed)
        return model, tokenizer, json.loads((entry / _DONE).read_text())
    model, tokenizer = build_policy(cfg, env_factory, None)
    if keep_in is not None:  # a run that could not save one checkpoint fails now, not after SFT
        check_free_space(keep_in.parent, checkpoint_bytes(model))
    if cfg.sft.episodes == 0:
        return model, tokenizer, {}
    echo(f"SFT warm start on {cfg.sft.episodes} expert episodes ...")
    stats = sft_warm_start(model, tokenizer, env_factory, cfg, echo)
    if entry is not None:
        save_entry(entry, model, tokenizer, stats)
        echo(f"SFT warm start cached in {entry}")
    elif keep_in is not None:
        save_entry(keep_in, model, tokenizer, stats)
    return model, tokenizer, stats


def save_entry(entry: Path, model, tokenizer, stats: dict[str, Any]) -> None:
    """The warmed-up policy and its SFT stats, written whole or not at all."""

    def write(folder: Path) -> None:
        save_policy(model, tokenizer, folder)
        plain = {k: v for k, v in stats.items() if isinstance(v, int | float | str)}
        (folder / _DONE).write_text(json.dumps(plain, indent=2))

    write_entry(entry, write, _DONE)
