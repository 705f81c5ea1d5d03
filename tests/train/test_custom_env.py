"""The envs of docs/custom-env.md (tests/custom_env_pkg, a package outside spear_rl) on the real
paths: trained for 2 steps by `spear train` by import path and by entry point, evaluated, trained
from Python, and a tool-using episode through the rollout, parsing and the tool-call reward."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from spear_rl.cli import main
from spear_rl.rollout.generation import GenOutput
from spear_rl.train.metrics import read_metrics

EXAMPLE = Path(__file__).parent.parent / "custom_env_pkg"
# a few seconds of SFT, 2 steps of 2 tasks x 4 episodes, 4 evaluation episodes
TINY = [
    "--model.tiny_layers=1",
    "--model.tiny_hidden=64",
    "--model.tiny_heads=2",
    "--model.tiny_vocab=512",
    "--sft.episodes=16",
    "--sft.epochs=1",
    "--rollout.group_size=4",
    "--train.steps=2",
    "--train.batch_tasks=2",
    "--train.eval_episodes=4",
    "--train.threads=1",
    "--log.progress=false",
]


def tiny_args(output_dir: Path, name: str) -> list[str]:
    return [*TINY, f"--train.output_dir={output_dir}", f"--train.run_name={name}"]


def check_two_steps(run_dir: Path) -> dict:
    steps = [r["step"] for r in read_metrics(run_dir) if "rollout/success_rate" in r]
    assert steps == [1, 2]
    assert (run_dir / "checkpoints").is_dir() and (run_dir / "result.json").is_file()
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_the_game_trains_by_import_path_from_the_users_folder(
    tmp_path, monkeypatch, fresh_example_modules
):
    monkeypatch.chdir(EXAMPLE)  # the user's folder: guess.yaml and the spear_example_envs package
    assert main(["train", "--recipe", "guess.yaml", *tiny_args(tmp_path, "guess")]) == 0
    config = check_two_steps(tmp_path / "guess")
    assert config["env"]["name"] == "spear_example_envs.guess:GuessNumber"
    assert Path(sys.modules["spear_example_envs.guess"].__file__).parent.parent == EXAMPLE


def test_the_tool_task_trains_by_entry_point_and_evaluates(
    example_envs_site, tmp_path, monkeypatch, fresh_example_modules, capsys
):
    monkeypatch.syspath_prepend(str(example_envs_site))  # as if pip-installed
    monkeypatch.chdir(tmp_path)  # not the package's folder: only the installed copy can be found
    recipe = str(EXAMPLE / "shop.yaml")
    assert main(["train", "--recipe", recipe, "--env.name=shop", *tiny_args(tmp_path, "shop")]) == 0
    config = check_two_steps(tmp_path / "shop")
    assert config["env"]["name"] == "shop" and config["rollout"]["layout"] == "whole"
    assert str(example_envs_site) in sys.modules["spear_example_envs.shop"].__file__
    assert all("rollout/tool_call_rate" in r for r in read_metrics(tmp_path / "shop") if r["step"])
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "shop"), "--episodes", "4"]) == 0
    assert "held-out success" in capsys.readouterr().out


def test_a_bad_env_name_is_one_line_on_the_command_line(tmp_path, capsys):
    code = main(["train", "--env.name=my_pkg.game:Nope", f"--train.output_dir={tmp_path}"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "spear train: error: env.name 'my_pkg.game:Nope': module 'my_pkg.game' not found; install "
        "the package that holds it, or run from the folder that holds it (or add that folder to "
        "PYTHONPATH)"
    )


def test_the_python_api_trains_an_env_class_defined_in_a_function(tmp_path):
    import spear_rl
    from spear_rl import Env, StepResult

    class Coin(Env):  # defined here: no other process could import it
        system_prompt = "Say heads or tails in <action>...</action>."

        def _reset(self, seed: int) -> str:
            self.task = "Call the coin."
            return "The coin is in the air."

        def _step_action(self, action: str) -> StepResult:
            self.won = action == "heads"
            return StepResult("It landed.", float(self.won), True, {})

        def expert_action(self) -> str:
            return "heads"

    notes: list[str] = []
    over = {opt[2:].split("=")[0]: yaml.safe_load(opt.split("=")[1]) for opt in TINY}
    over.update({"train.output_dir": str(tmp_path), "train.run_name": "coin", "train.steps": 1})
    result = spear_rl.train("sokoban/spear", over, env=Coin, echo=notes.append)
    assert result.run_dir == tmp_path / "coin" and result.steps == 1
    assert 0.0 <= result.success_after <= 1.0
    name = yaml.safe_load((result.run_dir / "config.yaml").read_text())["env"]["name"]
    assert name.endswith(
        ":test_the_python_api_trains_an_env_class_defined_in_a_function.<locals>.Coin"
    )
    assert any("is not importable from another process" in n for n in notes)


# ---- a tool-using episode, scripted, through the real rollout and scoring ---------------------------
class ScriptedEngine:
    """Writes the shop agent's replies from the conversation so far: a call to an unknown tool,
    then price, multiply and the answer (each env reply is one `tool` message)."""

    name = "scripted"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generate(self, prompts, sampling, generator):
        return [self._reply(self.tokenizer.decode(p)) for p in prompts]

    def _reply(self, text: str) -> GenOutput:
        from spear_example_envs.shop import PRICES

        count, item = re.search(r"What do (\d+) (\w+)s cost\?", text).groups()
        replies = [
            '<tool_call>{"name": "prices", "arguments": {}}</tool_call>',
            f'<tool_call>{{"name": "price", "arguments": {{"item": "{item}"}}}}</tool_call>',
            f'<tool_call>{{"name": "multiply", "arguments": {{"a": {PRICES[item]}, "b": {count}}}}}'
            "</tool_call>",
            f"<answer>{PRICES[item] * int(count)}</answer>",
        ]
        reply = replies[text.count("<|im_start|>tool\n")]
        ids = [*self.tokenizer.encode(reply, add_special_tokens=False), self.tokenizer.eos_token_id]
        return GenOutput(ids, [-0.5] * len(ids), False)


def test_a_tool_episode_runs_through_rollout_parsing_and_the_tool_call_reward(
    monkeypatch, fresh_example_modules
):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from spear_example_envs.shop import PRICES, ShopEnv

    from spear_rl.models import ModelConfig, load_policy
    from spear_rl.rollout import RolloutConfig, run_rollout
    from spear_rl.train.config import Config
    from spear_rl.train.scoring import score_batch
    from spear_rl.train.sft import sft_corpus_texts

    small = ModelConfig(tiny_layers=1, tiny_hidden=32, tiny_heads=2, tiny_vocab=512)
    model, tokenizer = load_policy(small, corpus=lambda: sft_corpus_texts(ShopEnv, range(8)))
    cfg = RolloutConfig(group_size=2, max_turns=4, layout="whole", max_response_tokens=64)
    result = run_rollout(
        model, tokenizer, ShopEnv, [3, 11], cfg, seed=0, engine=ScriptedEngine(tokenizer)
    )
    for trajectory in result.trajectories:
        assert trajectory.won and trajectory.end_reason == "done"
        assert (trajectory.tool_calls, trajectory.invalid_turns) == (2, 1)
        assert [t.valid for t in trajectory.turns] == [False, True, True, True]
    for sample in result.samples:  # whole layout: one sample per episode
        conversation = tokenizer.decode(sample.prompt_ids + sample.response_ids)
        assert '"name": "multiply"' in conversation.split("<|im_start|>user")[0]  # in the system
        assert "Invalid tool call: unknown tool 'prices'" in conversation
        item = re.search(r"What do \d+ (\w+)s cost", conversation).group(1)
        masked = [t for t, m in zip(sample.response_ids, sample.loss_mask, strict=True) if not m]
        assert f"<|im_start|>tool\n{PRICES[item]}<|im_end|>" in tokenizer.decode(masked)
    score_batch(result.trajectories, Config().algo, toolcall_weight=1.0)
    # R = env reward 1 + tool-call bonus min(1, 0.1 * 2 calls) - invalid penalty 0.1 * 1 turn
    assert [s.reward for s in result.samples] == pytest.approx([1.1] * 4)


def test_sft_without_an_expert_is_an_error_that_says_what_to_do(tmp_path):
    import spear_rl
    from spear_rl import Env, StepResult
    from spear_rl.fields import ConfigError

    class NoExpert(Env):
        def _reset(self, seed: int) -> str:
            return "start"

        def _step_action(self, action: str) -> StepResult:
            return StepResult("end", 0.0, True, {})

    over = {"sft.episodes": 4, "train.output_dir": str(tmp_path), "log.progress": False}
    with pytest.raises(ConfigError, match="expert_action\\(\\) gave no action in any of them"):
        spear_rl.train(None, over, env=NoExpert, echo=lambda *_: None)


def test_env_workers_in_other_processes_refuse_a_class_they_cannot_import(tmp_path):
    import spear_rl
    from spear_rl import Env
    from spear_rl.fields import ConfigError

    class Local(Env):
        def _reset(self, seed: int) -> str:
            return "start"

        def _step_action(self, action: str):
            raise AssertionError("never built: the run is refused first")

    over = {"env.workers": "process", "train.output_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="env.workers=process rebuilds each env in another"):
        spear_rl.train(None, over, env=Local, echo=lambda *_: None)
    assert not any(tmp_path.iterdir())


def test_run_folders_are_named_by_the_env_class_not_its_import_path():
    from spear_rl.train.run_dir import env_label

    assert env_label("spear_example_envs.guess:GuessNumber") == "GuessNumber"
    assert env_label("my_module:Outer.Inner") == "Inner"
    assert (env_label("sokoban"), env_label("guess")) == ("sokoban", "guess")


def test_build_config_is_the_command_lines_config():
    import spear_rl
    from spear_rl.train.config import load_config, parse_overrides

    from_python = spear_rl.build_config(
        "sokoban/spear",
        {"train.steps": 3, "algo": {"loss": "vanilla"}},
        env="my_pkg.game:Game",
        env_kwargs={"size": 5},
    )
    args = ["--train.steps=3", "--algo.loss=vanilla", "--env.name=my_pkg.game:Game"]
    from_cli = load_config("sokoban/spear", parse_overrides([*args, "--env.kwargs.size=5"]))
    assert from_python == from_cli and from_python.env.kwargs == {"size": 5}
    with pytest.raises(ValueError, match="either config= or a recipe"):
        spear_rl.train(config=from_python, overrides={"train.steps": 1})
