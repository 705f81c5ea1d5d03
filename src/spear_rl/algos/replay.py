"""SPEAR's self-imitation replay buffer (spec §6).

The buffer keeps past winning samples (on-policy advantage above a threshold) for a few steps, and
a history of per-group mean/std rewards. Each step the stored wins are re-judged against the policy
as it is now (`recalibrated`), and those still better than usual are drawn for the replay loss.

The trainer's order each step:
    replayed = buffer.draw(n, step)            # during the update
    buffer.evict_stale(step)                   # after the update
    buffer.record_baselines(group_means, group_stds)
    buffer.admit(new_items)

Choices this module makes where the spec leaves room:
- Age: an item admitted at step s has age `step - s`; `evict_stale(step)` drops items with age
  greater than `tolerate_steps` (W). With the order above an item is drawable on steps s+1 .. s+W+1.
- An empty baseline history gives a baseline of 0 (A' = R) and, with `use_std`, a scale of 1. With the
  order above the history is never empty once something has been admitted.
- `replay_batch > 0` is the number of samples per draw; 0 leaves it to the caller's `n`.
- `trigger="reference"` (the published code): nothing is drawn until more than 1.5 * buffer_size
  items beat the baseline (A' > 0); then a uniformly random subset of them, of the largest
  power-of-two size not above their count nor `buffer_size` (4096 qualifying at a buffer of 2048
  replay 2048), is returned once (regardless of `n`: the trainer splits it into mini-batches) and
  the whole buffer is cleared. `buffer_size` is then only the trigger
  scale, not a capacity (a capacity of B could never hold 1.5 * B items); memory stays bounded by
  age eviction. Every random choice comes from the buffer's own seeded generator, saved in
  `state_dict`, so a resumed run fires at the same steps with the same subsets.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spear_rl.fields import ConfigError, Settings, setting

RECALIBRATIONS = ("p50", "decay")
SAMPLINGS = ("uniform", "priority")
TRIGGERS = ("continuous", "reference")
BASELINE_GROUPS = ("kept", "all")
# Added to the median history std before dividing (spec §6), as in the grpo advantage.
STD_EPS = 1e-6
# Reference trigger: fire once more than this many buffer sizes of items beat the baseline.
REFERENCE_FIRE_FACTOR = 1.5
STATE_VERSION = 1


REPLAY_UPDATES = ("joint", "separate")


@dataclass
class ReplayConfig(Settings):
    """SPEAR's self-imitation settings: the `replay` section (spec §6)."""

    section = "replay"

    enabled: bool = setting(True, "the self-imitation replay buffer and its loss term")
    buffer_size: int = setting(
        2048, "capacity B in samples; the oldest are dropped beyond it", ge=1
    )
    tolerate_steps: int = setting(5, "W: samples older than this many steps are evicted", ge=0)
    admit_threshold: float = setting(0.0, "admit samples whose on-policy advantage is above this")
    require_tool_call: bool = setting(False, "admit only trajectories that called a tool (math)")
    baseline_history: int = setting(10240, "group mean/std entries kept for the P50 baseline", ge=1)
    recalibration: str = setting(
        "p50",
        "p50: A' = R - P50(history means); decay: A' = decay_lambda * A",
        choices=RECALIBRATIONS,
    )
    decay_lambda: float = setting(0.9, "lambda of recalibration=decay", gt=0, le=1)
    sampling: str = setting(
        "uniform", "uniform, or priority (probability proportional to A')", choices=SAMPLINGS
    )
    trigger: str = setting(
        "continuous",
        "continuous: draw every step; reference: replay once past 1.5 B qualifying, then clear",
        choices=TRIGGERS,
    )
    replay_batch: int = setting(
        0, "samples per optimiser step; 0 = replay_ratio x the on-policy mini-batch", ge=0
    )
    replay_ratio: float = setting(
        1.0,
        "replayed per on-policy sample of a mini-batch when replay_batch is 0 (spec: 1.0; 0.125 "
        "costs about Dr.BoT's step, and SPEAR's lead then shrinks inside the noise)",
        gt=0,
    )
    coef: float = setting(1.0, "kappa: the replay coefficient after warm-up", ge=0)
    warmup_steps: int = setting(200, "T_rep of the replay coefficient's cosine rise", ge=0)
    update: str = setting(
        "joint",
        "joint: L_on + c L_replay per step; separate: extra replay steps (the reference)",
        choices=REPLAY_UPDATES,
    )
    clip_cov_ratio: float = setting(0.02, "clip_cov's share of replay tokens", ge=0, le=1)
    clip_cov_lb: float = setting(2.0, "clip_cov's lower covariance bound on replay tokens")
    clip_cov_ub: float = setting(60.0, "clip_cov's upper covariance bound on replay tokens")
    kl_cov_ratio: float = setting(
        0.02, "kl_cov's share of replay tokens (the SPEAR scripts' kl_cov_ratio_replay)", ge=0, le=1
    )
    entropy_coef: float = setting(
        0.001, "entropy bonus c_H of the replay term (the reference recipe's 0.001)", ge=0
    )
    baseline_groups: str = setting(
        "kept",
        "groups whose reward mean/std enter the baseline history: those the group-std filter "
        "kept (the reference), or all",
        choices=BASELINE_GROUPS,
    )

    def check(self) -> None:
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ConfigError(
                f"clip_cov_lb ({self.clip_cov_lb}) must be below clip_cov_ub ({self.clip_cov_ub})"
            )


@dataclass
class ReplayItem:
    payload: Any  # the training sample (opaque to the buffer; must be picklable)
    reward: float  # R of the sample
    advantage: float  # on-policy advantage when admitted
    step: int  # insertion step
    group_id: int
    tool_calls: int = 0


class ReplayBuffer:
    """Past wins, the baseline history, and the generator that draws from them."""

    def __init__(self, cfg: ReplayConfig, seed: int = 0, *, use_std: bool = False) -> None:
        self.cfg = cfg
        # divide by P50(history stds) + eps: runs whose advantages are std-normalised
        self.use_std = use_std
        self._items: list[ReplayItem] = []  # oldest first
        self._history_means: deque[float] = deque(maxlen=cfg.baseline_history)
        self._history_stds: deque[float] = deque(maxlen=cfg.baseline_history)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._counters: dict[str, float] = {
            "last_admitted": 0,
            "last_evicted": 0,
            "last_capacity_evicted": 0,
            "last_drawn": 0,
            "last_qualifying": 0,
            "recal_adv_mean": 0.0,
            "recal_adv_min": 0.0,
            "recal_adv_max": 0.0,
            "reference_fires": 0,
        }

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> list[ReplayItem]:
        """A copy of the held items, oldest first."""
        return list(self._items)

    # ---- maintenance ------------------------------------------------------------------------

    def evict_stale(self, step: int) -> int:
        """Drop items older than `tolerate_steps` (step - item.step > W); return how many."""
        keep = [it for it in self._items if step - it.step <= self.cfg.tolerate_steps]
        evicted = len(self._items) - len(keep)
        self._items = keep
        self._counters["last_evicted"] = evicted
        return evicted

    def record_baselines(self, means: Sequence[float], stds: Sequence[float]) -> None:
        """Append one step's per-group reward means and stds; the oldest fall off past the cap.

        A non-finite std (a group of one) is stored as 0; a non-finite mean is a bug upstream.
        """
        if len(means) != len(stds):
            raise ValueError(f"{len(means)} group means but {len(stds)} group stds")
        for mean, std in zip(means, stds, strict=True):
            if not math.isfinite(mean):
                raise ValueError(f"group mean reward must be finite, got {mean}")
            self._history_means.append(float(mean))
            self._history_stds.append(float(std) if math.isfinite(std) else 0.0)

    def admit(self, items: Sequence[ReplayItem]) -> int:
        """Hold items with advantage > admit_threshold (and >= 1 tool call if required).

        Returns how many passed; in the continuous trigger the oldest items beyond `buffer_size`
        are then dropped (counted in stats as `last_capacity_evicted`).
        """
        cfg = self.cfg
        admitted = [
            it
            for it in items
            if it.advantage > cfg.admit_threshold
            and (not cfg.require_tool_call or it.tool_calls >= 1)
        ]
        self._items.extend(admitted)
        overflow = 0
        if cfg.trigger == "continuous":
            overflow = max(0, len(self._items) - cfg.buffer_size)
            del self._items[:overflow]
        self._counters["last_admitted"] = len(admitted)
        self._counters["last_capacity_evicted"] = overflow
        return len(admitted)

    # ---- recalibration and drawing ----------------------------------------------------------

    def baseline(self) -> tuple[float, float]:
        """(P50 of history means, P50 of history stds); (0, 1) while the history is empty."""
        if not self._history_means:
            return 0.0, 1.0
        return float(np.median(self._history_means)), float(np.median(self._history_stds))

    def recalibrated(self, step: int) -> list[tuple[ReplayItem, float]]:
        """(item, A') for every held item whose recalibrated advantage A' is > 0, oldest first.

        p50: A' = R - P50(history means), divided by P50(history stds) + 1e-6 when `use_std`.
        decay: A' = decay_lambda * stored advantage. `step` (the current step) does not enter
        either rule.
        """
        cfg = self.cfg
        if cfg.recalibration == "decay":
            scored = [(it, cfg.decay_lambda * it.advantage) for it in self._items]
        else:
            mean_p50, std_p50 = self.baseline()
            scale = std_p50 + STD_EPS if self.use_std and self._history_stds else 1.0
            scored = [(it, (it.reward - mean_p50) / scale) for it in self._items]
        return [(it, adv) for it, adv in scored if adv > 0]

    def draw(self, n: int, step: int) -> list[tuple[ReplayItem, float]]:
        """Recalibrated items to replay this step, as (item, A') in buffer order.

        Continuous trigger: up to `replay_batch` (or `n` when it is 0) distinct items, uniformly or
        with probability proportional to A', without replacement; items stay held. Reference
        trigger: see the module docstring.
        """
        if n < 0:
            raise ValueError(f"draw needs n >= 0, got {n}")
        candidates = self.recalibrated(step)
        self._counters["last_qualifying"] = len(candidates)
        if self.cfg.trigger == "reference":
            drawn = self._draw_reference(candidates)
        else:
            limit = self.cfg.replay_batch if self.cfg.replay_batch > 0 else n
            drawn = self._draw_continuous(candidates, limit)
        self._record_draw(drawn)
        return drawn

    def _draw_continuous(
        self, candidates: list[tuple[ReplayItem, float]], limit: int
    ) -> list[tuple[ReplayItem, float]]:
        count = min(limit, len(candidates))
        if count == 0:
            return []
        if count == len(candidates):
            return candidates
        probs = None
        if self.cfg.sampling == "priority":
            weights = np.array([adv for _, adv in candidates], dtype=np.float64)
            probs = weights / weights.sum()
        chosen = self._rng.choice(len(candidates), size=count, replace=False, p=probs)
        return [candidates[i] for i in sorted(chosen.tolist())]

    def _draw_reference(
        self, candidates: list[tuple[ReplayItem, float]]
    ) -> list[tuple[ReplayItem, float]]:
        if len(candidates) <= REFERENCE_FIRE_FACTOR * self.cfg.buffer_size:
            return []
        # the largest power of two <= min(count, capacity): the reference never replays more
        # than the buffer's capacity at once
        size = 1 << (min(len(candidates), self.cfg.buffer_size).bit_length() - 1)
        chosen = self._rng.choice(len(candidates), size=size, replace=False)
        self._items = []
        self._counters["reference_fires"] += 1
        return [candidates[i] for i in sorted(chosen.tolist())]

    def _record_draw(self, drawn: list[tuple[ReplayItem, float]]) -> None:
        advs = [adv for _, adv in drawn]
        self._counters["last_drawn"] = len(drawn)
        self._counters["recal_adv_mean"] = float(np.mean(advs)) if advs else 0.0
        self._counters["recal_adv_min"] = min(advs) if advs else 0.0
        self._counters["recal_adv_max"] = max(advs) if advs else 0.0

    # ---- observation and checkpoints --------------------------------------------------------

    def stats(self, step: int) -> dict[str, float]:
        """Metrics for the step log: size, ages at `step`, baseline, and the last calls' counts."""
        ages = [step - it.step for it in self._items]
        mean_p50, std_p50 = self.baseline()
        out: dict[str, float] = {
            "size": float(len(self._items)),
            "mean_age": float(np.mean(ages)) if ages else 0.0,
            "max_age": float(max(ages)) if ages else 0.0,
            "baseline_p50": mean_p50,
            "baseline_std_p50": std_p50 if self._history_stds else 0.0,
            "history_len": float(len(self._history_means)),
        }
        out.update({key: float(value) for key, value in self._counters.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (plain lists/dicts; payloads by reference) that `load_state_dict` restores."""
        return {
            "version": STATE_VERSION,
            "config": asdict(self.cfg),
            "items": [_item_fields(it) for it in self._items],
            "history_means": list(self._history_means),
            "history_stds": list(self._history_stds),
            "rng": self._rng.bit_generator.state,
            "counters": dict(self._counters),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore items, history, generator and counters; the buffer keeps its own config."""
        missing = [k for k in ("items", "history_means", "history_stds", "rng") if k not in state]
        if missing:
            raise ValueError(f"not a ReplayBuffer state_dict: missing {', '.join(missing)}")
        self._items = [ReplayItem(**fields) for fields in state["items"]]
        self._history_means = deque(state["history_means"], maxlen=self.cfg.baseline_history)
        self._history_stds = deque(state["history_stds"], maxlen=self.cfg.baseline_history)
        self._rng.bit_generator.state = state["rng"]
        self._counters.update(state.get("counters", {}))


def _item_fields(item: ReplayItem) -> dict[str, Any]:
    """The item's fields as a dict without deep-copying the payload (dataclasses.asdict would)."""
    return {
        "payload": item.payload,
        "reward": item.reward,
        "advantage": item.advantage,
        "step": item.step,
        "group_id": item.group_id,
        "tool_calls": item.tool_calls,
    }
