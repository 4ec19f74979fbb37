"""Config: TOML loading, unknown keys refused with the key named, stable hashes."""

import sys

import pytest

from recsys.config import ConfigError, config_hash, load_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collab]\nfactors = 32\n[eval]\nk = 20\n")
    config = load_config(path, overrides={"collab": {"epochs": 3}})
    assert (config.collab.factors, config.collab.epochs, config.eval.k) == (32, 3, 20)
    assert config.encoder.temperature == load_config().encoder.temperature


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collab]\nfactorz = 32\n")
    with pytest.raises(ConfigError, match=r"c.toml: collab.factorz"):
        load_config(path)


def test_bad_value_and_bad_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collab]\nfactors = -1\n")
    with pytest.raises(ConfigError, match="collab.factors"):
        load_config(path)
    path.write_text("[collab\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_hash_is_stable_and_sensitive():
    a, b = load_config(), load_config(overrides={"collab": {"factors": 8}})
    assert config_hash(a) == config_hash(load_config())
    assert config_hash(a) != config_hash(b)
    assert config_hash(a.encoder) == config_hash(b.encoder)


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].glob("configs/*.toml")):
        load_config(path)


def test_default_toml_matches_the_code():
    from pathlib import Path

    from recsys.config import PipelineConfig

    path = Path(__file__).parents[1] / "configs" / "default.toml"
    assert load_config(path) == PipelineConfig(), "run: python configs/generate_default.py"
    sys.path.insert(0, str(path.parent))
    try:
        from generate_default import render
    finally:
        sys.path.pop(0)
    assert path.read_text(encoding="utf-8") == render(), "run: python configs/generate_default.py"


def test_every_key_is_documented():
    from recsys.config import PipelineConfig

    missing = [
        f"{section}.{key}"
        for section, field in PipelineConfig.model_fields.items()
        for key, info in field.annotation.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, f"keys without a docstring in recsys/config.py: {missing}"


def test_environment_overrides_nested_keys_over_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collab]\nfactors = 16\nepochs = 5\n[blend]\ncold_prior = 0.5\n")
    env = {
        "RECSYS_COLLAB__FACTORS": "32",
        "recsys_blend__sources": '["text", "collab"]',  # names are case-insensitive
        "RECSYS_GATE__FLOORS": '{"ndcg": 0.01}',
        "RECSYS_WORKDIR": "/elsewhere",  # not a config key: no double underscore
    }
    config = load_config(path, environ=env)
    assert config.collab.factors == 32 and config.collab.epochs == 5  # env wins, file stays
    assert config.blend.sources == ["text", "collab"] and config.blend.cold_prior == 0.5
    assert config.gate.floors == {"ndcg": 0.01}
    assert load_config(path, overrides={"collab": {"factors": 8}}, environ=env).collab.factors == 8


def test_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("RECSYS_ENCODER__HISTORY_LEN", "7")
    assert load_config().encoder.history_len == 7


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RECSYS_COLAB__FACTORS", "3", "RECSYS_COLAB__FACTORS: no config key colab.factors"),
        ("RECSYS_COLLAB__FACTORZ", "3", "no config key collab.factorz"),
        ("RECSYS_COLLAB__FACTORS", "many", "environment: collab.factors"),
        ("RECSYS_BLEND__SOURCES", "text,collab", "RECSYS_BLEND__SOURCES: expected JSON"),
    ],
)
def test_bad_environment_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={name: value})


def test_schema_is_valid_json_schema_and_describes_the_config():
    import jsonschema_rs

    from recsys.config import PipelineConfig
    from recsys.jobs.config import schema

    document = schema()
    jsonschema_rs.meta.validate(document)  # raises if not a valid 2020-12 schema
    validator = jsonschema_rs.validator_for(document)
    assert validator.is_valid(PipelineConfig().model_dump(mode="json", exclude_none=True))
    assert not validator.is_valid({"collab": {"factors": "many"}})
    assert not validator.is_valid({"collab": {"factorz": 3}})
    factors = document["$defs"]["CollabConfig"]["properties"]["factors"]
    assert factors["description"] and factors["default"] == 64


def test_dump_toml_round_trips(tmp_path):
    from support import dump_toml

    config = load_config(
        overrides={"blend": {"fixed_weights": {"text": 0.5}}, "gate": {"floors": {"ndcg": 0.01}}}
    )
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_config(path) == config
