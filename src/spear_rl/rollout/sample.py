"""What a rollout produces: token-exact training samples and the trajectories they came from.

Token ids, loss masks and behaviour log-probs are recorded while the rollout happens; nothing here is
ever re-tokenised from text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    """One unit that gets a loss: a prompt and a response.

    `per_turn` layout: one Sample per turn (prompt = rendered task + history + observation).
    `whole` layout: one Sample per trajectory; `response_ids` holds the whole conversation after the
    first prompt, model tokens with loss_mask 1 and tool/env tokens with loss_mask 0.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    loss_mask: list[int]  # len(response_ids); 1 = model-generated token that is trained on
    # len(response_ids); behaviour log-prob of each token (0.0 where mask 0)
    old_logprobs: list[float]
    group_id: int  # task instance within the step ("uid"); groups are the n rollouts of one task
    traj_id: int  # unique within the step
    turn: int = 0  # 0-based turn index (per_turn); 0 in the whole layout
    anchor: str = ""  # raw observation the turn acted on (GiGPO step groups)
    step_reward: float = 0.0  # env reward received for this turn (per_turn); E_tau in whole
    valid: bool = True  # response parsed and the action was accepted (all turns valid, in whole)
    # the response held a parseable action or answer, accepted or not (False: a void turn; in
    # whole, False when any turn was void). The incomplete filter reads this, not `valid`.
    parsed: bool = True
    num_invalid: int = 0  # invalid turns inside this sample (1/0 per_turn; count in whole)
    truncated: bool = False  # the response hit its token limit (overlong filter)
    response_text: str = ""  # decoded model text, for filters and logs only
    # Filled when the trajectory ends (the same for every sample of a trajectory):
    episode_reward: float = 0.0  # E_tau
    won: bool = False
    tool_calls: int = 0  # K_tau
    all_turns_count: int = 0  # every turn of the trajectory, valid or not (the reference's K_tau)
    # Filled by the trainer:
    reward: float = 0.0  # R_tau + this sample's invalid penalty
    advantage: float = 0.0
    task_seed: int = -1
    # The generation engine's log-probs of the response tokens, when the trainer replaced
    # old_logprobs with the training model's own (engines other than hf); None = old_logprobs.
    behaviour_logprobs: list[float] | None = None


@dataclass
class Turn:
    """One rendered turn of a trajectory, for logs and sample dumps."""

    observation: str
    response: str
    action: str | None
    reward: float
    valid: bool


@dataclass
class Trajectory:
    group_id: int
    traj_id: int
    task_seed: int
    task: str
    samples: list[Sample] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    episode_reward: float = 0.0  # E_tau: sum of env rewards
    won: bool = False
    tool_calls: int = 0  # K_tau: valid env actions (agents) / executed code calls (math)
    invalid_turns: int = 0
    all_turns_count: int = 0  # every turn, valid or not (the reference's K_tau)
    timed_out: bool = False  # an env call exceeded its limit; the episode was ended as failed
    # Why the episode ended: "done", "max_turns", "prompt_too_long", "env_timeout", "env_error: ..."
    end_reason: str = ""
