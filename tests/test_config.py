"""Config: TOML loading, unknown keys refused with the key named, stable hashes."""

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


def test_dump_toml_round_trips(tmp_path):
    from support import dump_toml

    config = load_config(
        overrides={"blend": {"fixed_weights": {"text": 0.5}}, "gate": {"floors": {"ndcg": 0.01}}}
    )
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_config(path) == config
