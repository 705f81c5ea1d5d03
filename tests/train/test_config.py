"""The typed config: recipes load, overrides apply, bad keys and types fail naming the key."""

import pytest

from spear_rl.train.config import (
    ConfigError,
    list_recipes,
    load_config,
    parse_overrides,
    read_recipe,
    resolve_recipe_path,
    validate_config,
)


@pytest.mark.parametrize("name", list_recipes())
def test_every_builtin_recipe_loads_and_validates(name):
    cfg = load_config(name)
    validate_config(cfg)


def test_presets_differ_as_documented():
    grpo, drbot, spear = (load_config(f"sokoban/{p}") for p in ("grpo", "drbot", "spear"))
    assert (grpo.algo.adv_estimator, grpo.algo.clip_high, grpo.algo.loss_agg) == (
        "grpo",
        0.2,
        "token-mean",
    )
    assert not grpo.replay.enabled and grpo.algo.group_filter_ratio == 1.0
    assert (drbot.algo.adv_estimator, drbot.algo.clip_high) == ("dr_grpo", 0.28)
    assert (
        drbot.algo.loss_agg == "seq-mean-token-sum-norm" and drbot.algo.group_filter_ratio == 0.75
    )
    assert (
        drbot.algo.kl_coef == 0
        and not drbot.replay.enabled
        and drbot.algo.toolcall_schedule == "none"
    )
    # SPEAR = Dr.BoT + intrinsic reward + replay + clip_cov; everything else inherited
    assert (
        spear.replay.enabled
        and spear.algo.loss == "clip_cov"
        and spear.algo.toolcall_schedule == "cosine"
    )
    assert spear.algo.adv_estimator == drbot.algo.adv_estimator and spear.rollout == drbot.rollout


@pytest.mark.parametrize("env", ["sokoban", "alfworld", "webshop"])
def test_baseline_presets_match_the_published_scripts(env):
    """GRPO runs use no KL to a reference; GiGPO runs normalise both parts by std
    (mean_std_norm). Sources: docs/method.md, "Presets"."""
    grpo, gigpo = load_config(f"{env}/grpo"), load_config(f"{env}/gigpo")
    assert grpo.algo.kl_coef == 0.0 and gigpo.algo.kl_coef == 0.0
    assert load_config(f"{env}/spear-grpo").algo.kl_coef == 0.0
    assert (gigpo.algo.gigpo_episode_norm, gigpo.algo.gigpo_step_norm) == ("std", "std")


def test_overrides_parse_types_and_nesting():
    over = parse_overrides(
        ["--algo.loss=clip_cov", "--train.steps", "7", "--env.kwargs={size: 5}", "--train.lr=1e-3"]
    )
    assert over == {
        "algo": {"loss": "clip_cov"},
        "train": {"steps": 7, "lr": "1e-3"},
        "env": {"kwargs": {"size": 5}},
    }
    cfg = load_config("sokoban/spear", over)
    assert (
        cfg.algo.loss == "clip_cov" and cfg.train.steps == 7 and cfg.train.lr == pytest.approx(1e-3)
    )
    # one kwarg changes, the recipe's others stay
    assert cfg.env.kwargs == {"size": 5, "num_boxes": 1, "max_steps": 20}
    dotted = load_config("alfworld/spear", parse_overrides(["--env.kwargs.num_receptacles=7"]))
    assert dotted.env.kwargs == {
        "max_steps": 20,
        "num_receptacles": 7,
        "num_distractors": 2,
        "expert": "search",
    }


def test_switching_env_starts_kwargs_afresh():
    cfg = load_config("sokoban/spear", parse_overrides(["--env.name=alfworld"]))
    assert cfg.env.name == "alfworld" and cfg.env.kwargs == {}
    cfg = load_config(
        "webshop/spear", parse_overrides(["--env.name=webshop_http", "--env.kwargs.url=http://x"])
    )
    assert cfg.env.kwargs == {"url": "http://x"}


def test_unknown_key_names_the_key_and_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"'algo.los'.*did you mean 'algo.loss'"):
        load_config("sokoban/spear", parse_overrides(["--algo.los=vanilla"]))
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'"):
        load_config("sokoban/spear", {"trian": {"steps": 1}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--train.steps=ten", r"'train.steps' must be an integer"),
        ("--replay.enabled=maybe", r"'replay.enabled' must be true or false"),
        ("--algo.clip_low=[1]", r"'algo.clip_low' must be a number"),
    ],
)
def test_ill_typed_values_fail_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("sokoban/spear", parse_overrides([override]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--algo.loss=clipcov",
            r"algo.loss 'clipcov' is not one of: .*clip_cov.*did you mean 'clip_cov'",
        ),
        ("--algo.loss=vanila", r"algo.loss 'vanila' is not one of: .*did you mean 'vanilla'"),
        ("--replay.update=both", r"replay.update 'both' is not one of: joint, separate"),
        ("--train.steps=0", r"train.steps must be >= 1"),
        ("--replay.replay_ratio=0", r"replay.replay_ratio must be > 0"),
        ("--algo.group_filter_ratio=1.5", r"algo.group_filter_ratio must be <= 1"),
        ("--train.lr=.nan", r"train.lr must be a finite number"),
        ("--rollout.temperature=0", r"rollout.temperature must be > 0 for training"),
        ("--train.precision=fp16", r"train.precision 'fp16' is not one of: float32, bfloat16"),
        (
            ["--rollout.engine=vllm", "--rollout.precision=bfloat16"],
            r"rollout.precision applies to the hf engine; vllm samples in model.dtype",
        ),
    ],
)
def test_bad_values_fail_when_the_config_is_loaded(override, message):
    overrides = [override] if isinstance(override, str) else override
    with pytest.raises(ConfigError, match=message):
        load_config("sokoban/spear", parse_overrides(overrides))


def test_validate_config_rechecks_a_changed_config():
    cfg = load_config("sokoban/spear")
    cfg.algo.loss = "vanila"
    with pytest.raises(ConfigError, match=r"algo.loss 'vanila' is not one of"):
        validate_config(cfg)


def test_bad_override_syntax_and_missing_recipe():
    with pytest.raises(ConfigError, match="use --section.key=value"):
        parse_overrides(["--steps=3"])
    with pytest.raises(ConfigError, match="not found.*sokoban/spear"):
        resolve_recipe_path("sokoban/nope")


def test_inheritance_and_loops(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\ntrain: {steps: 3}\n")
    (tmp_path / "b.yaml").write_text("train: {steps: 9, lr: 0.5}\n")
    assert read_recipe(tmp_path / "a.yaml") == {"train": {"steps": 3, "lr": 0.5}}
    (tmp_path / "c.yaml").write_text("inherit: d.yaml\n")
    (tmp_path / "d.yaml").write_text("inherit: c.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        read_recipe(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_recipe(tmp_path / "e.yaml")


def test_config_round_trips_through_yaml(tmp_path):
    import yaml

    from spear_rl.train.config import config_from_dict

    cfg = load_config("sokoban/spear-gigpo")
    assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_docs_config_md_is_generated_from_the_declarations():
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "tools" / "gen_config_doc.py"
    spec = importlib.util.spec_from_file_location("gen_config_doc", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT.read_text() == module.render(), "run python tools/gen_config_doc.py"


def test_every_config_field_has_a_doc_and_sections_name_themselves():
    import dataclasses

    from spear_rl.train.config import Config

    for section in dataclasses.fields(Config):
        cls = section.default_factory().__class__
        assert cls.section == section.name
        for field in dataclasses.fields(cls):
            assert field.metadata.get("doc"), f"{section.name}.{field.name} has no doc"


def test_off_for_a_string_key_stays_the_word_yaml_would_turn_into_false():
    # YAML 1.1 reads `off` as False; the README's --sft.cache_dir=off must still mean "no cache"
    cfg = load_config(None, parse_overrides(["--sft.cache_dir=off"]))
    assert cfg.sft.cache_dir == "off"
    assert load_config(None, {"sft": {"cache_dir": False}}).sft.cache_dir == "off"
    assert load_config(None, {"model": {"cache_dir": False}}).model.cache_dir == "off"
