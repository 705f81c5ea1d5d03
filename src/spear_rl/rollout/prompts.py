"""What the model sees: prompt rendering for both sample layouts, token-exact.

`per_turn`: every turn is a fresh chat (system, user) whose user message holds the task, the last
`history_turns` (observation, action) pairs, the current observation and the admissible actions.
For an invalid turn the history pair shows the raw response (first INVALID_HISTORY_CHARS characters)
instead of an action, so the model sees its mistake.

`whole`: one growing conversation. The first prompt is the per_turn prompt of turn 0; after each
assistant turn the env's next message (the observation, or the env's feedback after an invalid
turn) is appended as a chat message of role `env.observation_role`, followed by the generation
prompt, both tokenised through the chat template. Earlier tokens are never re-tokenised.

Tool envs (`ToolEnv`) hand their tools' JSON schemas to the chat template when it renders tools
(Qwen2.5 and other tool-capable models); for a template that does not (the tiny model's ChatML) the
env's system prompt describes them instead (`env_prompt_setup`).

Model text and env text are untrusted: messages go through `models.chat_encoding.encode_chat`, so a
literal "<|im_end|>" inside a message is encoded as plain text and cannot forge a turn boundary.

`EpisodeRenderer` is the single place both the rollout and SFT take prompts from, which is what
makes SFT prompts identical to rollout prompts.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from spear_rl.envs.base import Env, StepResult
from spear_rl.models.chat_encoding import encode_chat
from spear_rl.models.tokenizer import end_of_turn_id, stop_token_ids
from spear_rl.rollout.config import RolloutConfig

INVALID_HISTORY_CHARS = 200

# A fixed conversation ending in an assistant turn: rendering it with and without one more message
# tells which tokens the chat template puts between the assistant's end-of-turn and the next turn.
_REFERENCE_CHAT = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a"},
]


def render_admissible(admissible: Sequence[str] | None) -> str:
    if not admissible:
        return ""
    return "Admissible actions: " + ", ".join(admissible)


def render_user_message(
    task: str,
    history: Sequence[tuple[str, str]],
    observation: str,
    admissible: Sequence[str] | None,
) -> str:
    """The per_turn user message (also the whole layout's first message, with no history)."""
    parts = []
    if task:
        parts.append(f"Task: {task}")
    if history:
        parts.append("Recent turns:")
        for past_observation, action in history:
            parts.append(f"Observation: {past_observation}\nAction: {action}")
    parts.append(f"Current observation:\n{observation}")
    if admissible:
        parts.append(render_admissible(admissible))
    return "\n".join(parts)


def render_observation_message(observation: str, admissible: Sequence[str] | None) -> str:
    """A later env message in the whole layout."""
    if admissible:
        return f"{observation}\n{render_admissible(admissible)}"
    return observation


def _chat_ids(
    tokenizer,
    messages: list[dict[str, str]],
    add_generation_prompt: bool,
    tools: list[dict] | None = None,
) -> list[int]:
    return encode_chat(tokenizer, messages, add_generation_prompt, tools)


_PROBE_TOOL = {
    "type": "function",
    "function": {"name": "probe", "description": "d", "parameters": {"type": "object"}},
}
_RENDERS_TOOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def template_renders_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template shows tool schemas (Qwen2.5 and other tool-capable
    models do; the tiny model's ChatML does not): a probe rendered with and without one tool."""
    known = _RENDERS_TOOLS.get(tokenizer)
    if known is None:
        chat = [{"role": "user", "content": "u"}]
        with_tool = _chat_ids(tokenizer, chat, True, [_PROBE_TOOL])
        known = with_tool != _chat_ids(tokenizer, chat, True)
        _RENDERS_TOOLS[tokenizer] = known
    return known


def env_prompt_setup(tokenizer, env: Env) -> tuple[str, list[dict] | None]:
    """(system prompt, tool schemas for the template) of an env, for this tokenizer."""
    if type(env).prompt_setup is Env.prompt_setup:  # an env without tools: skip the probe
        return env.system_prompt, None
    return env.prompt_setup(template_renders_tools(tokenizer))


def build_turn_prompt(
    tokenizer,
    env_system_prompt: str,
    task: str,
    history: Sequence[tuple[str, str]],
    observation: str,
    admissible: Sequence[str] | None,
    tools: list[dict] | None = None,
) -> list[int]:
    """Token ids of the chat (system, user) + generation prompt for one per_turn step.

    `history` holds the (observation, action) pairs to show, oldest first; the caller passes the
    last `history_turns` of them (EpisodeRenderer does). `tools`: JSON schemas handed to the chat
    template (for a template that renders them; see `env_prompt_setup`).
    """
    messages = []
    if env_system_prompt:
        messages.append({"role": "system", "content": env_system_prompt})
    messages.append(
        {"role": "user", "content": render_user_message(task, history, observation, admissible)}
    )
    return _chat_ids(tokenizer, messages, add_generation_prompt=True, tools=tools)


def env_message_ids(tokenizer, role: str, content: str) -> list[int]:
    """Tokens that follow an assistant's end-of-turn token in the whole layout: the rest of the
    template's turn closing (ChatML: "\\n"), the `role` message, and the next generation prompt."""
    before = _chat_ids(tokenizer, _REFERENCE_CHAT, add_generation_prompt=False)
    after = _chat_ids(
        tokenizer,
        [*_REFERENCE_CHAT, {"role": role, "content": content}],
        add_generation_prompt=True,
    )
    stops = set(stop_token_ids(tokenizer))
    ends = [i for i, t in enumerate(before) if t in stops]
    if after[: len(before)] != before or not ends:
        raise ValueError(
            "this tokenizer's chat template re-renders earlier turns when a message is appended, so "
            "the whole layout cannot extend a conversation token-exactly; use rollout.layout=per_turn"
        )
    return before[ends[-1] + 1 :] + after[len(before) :]


class EpisodeRenderer:
    """The model's view of one episode in either layout: the ids to feed it next, token-exact.

    Call `next_prompt()` before each turn and `record(...)` after stepping the env. In the whole
    layout it also accumulates the conversation (`conversation_ids`, `loss_mask`, `logprobs`).
    """

    def __init__(self, tokenizer, env: Env, cfg: RolloutConfig) -> None:
        self.tokenizer = tokenizer
        self.env = env
        self.cfg = cfg
        self.stop_ids = set(stop_token_ids(tokenizer))
        self.end_id = end_of_turn_id(tokenizer)
        self.history: list[tuple[str, str]] = []  # per_turn: every (observation, shown action)
        self.first_prompt: list[int] | None = None  # whole: the first prompt
        self.conversation_ids: list[int] = []  # whole: everything after the first prompt
        self.loss_mask: list[int] = []
        self.logprobs: list[float] = []
        self._pending_env_message: str | None = None

    def _admissible(self) -> list[str] | None:
        return self.env.admissible_actions if self.cfg.show_admissible else None

    def next_prompt(self) -> list[int] | None:
        """Ids to generate the next turn from, or None when even the shortest form exceeds
        max_prompt_tokens (per_turn drops history pairs, oldest first, before giving up)."""
        if self.cfg.layout == "per_turn":
            return self._per_turn_prompt()
        return self._whole_prompt()

    def _per_turn_prompt(self) -> list[int] | None:
        admissible = self._admissible()
        shown = min(self.cfg.history_turns, len(self.history))
        system_prompt, tools = env_prompt_setup(self.tokenizer, self.env)
        while True:
            history = self.history[len(self.history) - shown :] if shown else []
            ids = build_turn_prompt(
                self.tokenizer,
                system_prompt,
                self.env.task,
                history,
                self.env.observation,
                admissible,
                tools,
            )
            if len(ids) <= self.cfg.max_prompt_tokens:
                return ids
            if shown == 0:
                return None
            shown -= 1

    def _whole_prompt(self) -> list[int] | None:
        if self.first_prompt is None:
            system_prompt, tools = env_prompt_setup(self.tokenizer, self.env)
            self.first_prompt = build_turn_prompt(
                self.tokenizer,
                system_prompt,
                self.env.task,
                [],
                self.env.observation,
                self._admissible(),
                tools,
            )
        if self._pending_env_message is not None:
            role = self.env.observation_role
            self._append(env_message_ids(self.tokenizer, role, self._pending_env_message), None)
            self._pending_env_message = None
        context = self.first_prompt + self.conversation_ids
        return context if len(context) <= self.cfg.max_prompt_tokens else None

    def record(
        self,
        observation_before: str,
        response_ids: Sequence[int],
        logprobs: Sequence[float],
        response_text: str,
        result: StepResult,
    ) -> None:
        """Account for one turn: the model's response and what the env answered."""
        valid = bool(result.info.get("valid", False))
        if self.cfg.layout == "per_turn":
            action = result.info.get("action") if valid else None
            shown = action if action else response_text[:INVALID_HISTORY_CHARS]
            self.history.append((observation_before, shown))
            return
        self._append(list(response_ids), list(logprobs))
        if not response_ids or response_ids[-1] not in self.stop_ids:
            self._append(
                [self.end_id], None
            )  # close a truncated turn so the chat stays well formed
        if valid:
            self._pending_env_message = render_observation_message(
                result.observation, self._admissible()
            )
        else:
            self._pending_env_message = result.info.get("feedback") or result.observation

    def _append(self, ids: list[int], logprobs: list[float] | None) -> None:
        """Append tokens; model tokens (with log-probs) get mask 1, env/template tokens mask 0."""
        self.conversation_ids.extend(ids)
        if logprobs is None:
            self.loss_mask.extend([0] * len(ids))
            self.logprobs.extend([0.0] * len(ids))
        else:
            if len(logprobs) != len(ids):
                raise ValueError("one log-prob per response token is required")
            self.loss_mask.extend([1] * len(ids))
            self.logprobs.extend(float(x) for x in logprobs)
