"""env.name beyond the built-ins: import paths, installed entry points, and an error for each way a
name can be wrong."""

from __future__ import annotations

import sys
import textwrap

import pytest

from spear_rl.envs.base import make_env
from spear_rl.envs.resolve import EnvLoadError, env_entry_points, known_env_names, resolve_env
from spear_rl.registry import UnknownNameError


@pytest.fixture
def user_module(tmp_path, monkeypatch, fresh_example_modules):
    """A module `user_envs` on sys.path with a few right and wrong env objects."""
    (tmp_path / "user_envs.py").write_text(
        textwrap.dedent(
            """
            from spear_rl import Env, StepResult

            class Fine(Env):
                def __init__(self, size: int = 3):
                    super().__init__()
                    self.size = size
                def _reset(self, seed):
                    return "start"
                def _step_action(self, action):
                    return StepResult("ok", 0.0, True, {})

            class Unfinished(Env):
                def _reset(self, seed):
                    return "start"

            class NotAnEnv:
                pass

            def make_fine(size: int = 4):
                return Fine(size)

            def make_wrong():
                return "not an env"

            LIMIT = 3
            """
        )
    )
    (tmp_path / "user_envs_broken.py").write_text("import a_dependency_nobody_has\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_builtin_names_still_work_and_unknown_ones_list_the_known():
    assert make_env("sokoban").name == "sokoban"
    with pytest.raises(UnknownNameError) as err:
        make_env("sokobn")
    message = str(err.value)
    assert "unknown environment 'sokobn'; known: " in message and "sokoban" in message
    assert "import path 'package.module:EnvClass'" in message
    with pytest.raises(UnknownNameError, match="An import path needs a colon: 'user_envs:Fine'"):
        make_env("user_envs.Fine")


def test_an_import_path_builds_a_class_or_a_factory(user_module):
    env = make_env("user_envs:Fine", size=5)
    assert type(env).__name__ == "Fine" and env.size == 5
    assert make_env("user_envs:make_fine").size == 4


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("no_such_module:Env", {}, "module 'no_such_module' not found; install the package"),
        ("user_envs_broken:Env", {}, "importing 'user_envs_broken' failed: No module named"),
        ("user_envs:Missing", {}, "module 'user_envs' has no 'Missing'"),
        ("user_envs:NotAnEnv", {}, "is the class NotAnEnv, which is not an Env subclass"),
        ("user_envs:Unfinished", {}, "Unfinished does not implement _step_action"),
        ("user_envs:LIMIT", {}, "is a int, not an Env subclass or a function returning one"),
        ("user_envs:make_wrong", {}, "returned a str, not a spear_rl Env"),
        ("user_envs:Fine", {"sise": 3}, "rejects env.kwargs ['sise']: got an unexpected keyword"),
        ("user_envs:Fine", {"sise": 3}, "(it takes: size)"),
        (":Fine", {}, "an import path looks like 'package.module:EnvClass'"),
    ],
)
def test_each_bad_name_says_what_is_wrong(user_module, name, kwargs, message):
    with pytest.raises(EnvLoadError) as err:
        make_env(name, **kwargs)
    assert message in str(err.value)


def test_bad_kwargs_of_a_builtin_env_name_its_parameters():
    with pytest.raises(EnvLoadError, match=r"env 'sokoban' rejects env.kwargs \['colour'\]"):
        make_env("sokoban", colour="red")


def test_installed_entry_points_register_names(
    example_envs_site, monkeypatch, fresh_example_modules
):
    assert "guess" not in known_env_names()
    monkeypatch.syspath_prepend(str(example_envs_site))
    points = env_entry_points()  # read from the installed package's metadata
    assert points["guess"].value == "spear_example_envs.guess:GuessNumber"
    assert {"guess", "shop", "sokoban"} <= set(known_env_names())
    env = make_env("guess", high=4)
    assert type(env).__name__ == "GuessNumber" and env.high == 4
    assert str(example_envs_site) in sys.modules["spear_example_envs.guess"].__file__
    assert resolve_env("shop").__name__ == "ShopEnv"


def test_a_broken_entry_point_says_which(
    example_envs_site, tmp_path, monkeypatch, fresh_example_modules
):
    info = tmp_path / "broken_envs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-envs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[spear_rl.envs]\nbroken = broken_envs_mod:Env\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvLoadError, match=r"env 'broken' \(entry point broken_envs_mod:Env\)"):
        make_env("broken")


def test_worker_processes_rebuild_an_env_from_its_import_path(
    example_envs_site, monkeypatch, fresh_example_modules
):
    """Envs in other processes are rebuilt from (name, kwargs): an import path is enough."""
    from spear_rl.envs.pool import EnvSpec, make_env_pool

    monkeypatch.syspath_prepend(str(example_envs_site))  # spawned workers inherit sys.path
    spec = EnvSpec("spear_example_envs.shop:ShopEnv")
    with make_env_pool(
        "process", spec, timeout_s=60, num_workers=1, cpus_per_worker=1.0, ray_address=""
    ) as pool:
        (reset,) = pool.reset([3])
        assert reset.ok and reset.view.observation_role == "tool"
        system, schemas = reset.view.prompt_setup(template_renders_tools=True)
        assert [s["function"]["name"] for s in schemas] == ["price", "multiply"]
        call = '<tool_call>{"name": "multiply", "arguments": {"a": 6, "b": 7}}</tool_call>'
        (step,) = pool.step([0], [call])
        assert step.ok and step.result.observation == "42" and step.result.info["tool_call"]
