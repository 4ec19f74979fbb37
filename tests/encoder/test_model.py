"""TwoTowerEncoder: normalised outputs, cold users, Query input, save/load, integrity checks."""

import json
import shutil

import numpy as np
import pytest
import torch

from recsys.config import EncoderConfig
from recsys.encoder.backbone import model_hash
from recsys.encoder.model import EncoderLoadError, TwoTowerEncoder, build_towers
from recsys.ranking.base import Query

TEXTS = ["the red robot", "a love story about the prince", "ghost ship", "jazz city night"]


@pytest.fixture
def encoder(tiny_bert_dir) -> TwoTowerEncoder:
    torch.manual_seed(0)
    config = EncoderConfig(
        model_name_or_path=tiny_bert_dir, dim=16, seq_heads=2, history_len=4, max_length=16
    )
    adapter, user = build_towers(config, 32, "sequence")
    return TwoTowerEncoder(
        config, adapter, user, tiny_bert_dir, model_hash(tiny_bert_dir), "frozen"
    )


def _norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=1)


def test_items_and_users_are_unit_vectors_and_cold_users_zero(encoder):
    items = encoder.encode_items(TEXTS)
    assert items.shape == (4, 16) and items.dtype == np.float32
    np.testing.assert_allclose(_norms(items), 1.0, rtol=1e-5)
    histories = [np.array([0, 1]), np.array([], np.int64), np.array([], np.int64)]
    users = encoder.encode_users(histories, items, [None, None, "a fan of jazz"])
    np.testing.assert_allclose(_norms(users[[0, 2]]), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(users[1], np.zeros(16, np.float32))  # nothing to go on


def test_query_objects_give_the_same_vectors(encoder):
    items = encoder.encode_items(TEXTS)
    queries = [Query(history=np.array([3, 1])), Query(profile_text="the ghost night")]
    by_query = encoder.encode_users(queries, items)
    direct = encoder.encode_users([np.array([3, 1]), np.array([], np.int64)], items,
                                  [None, "the ghost night"])  # fmt: skip
    np.testing.assert_array_equal(by_query, direct)


def test_history_longer_than_history_len_uses_the_newest_items(encoder):
    items = encoder.encode_items(TEXTS)
    long = encoder.encode_users([np.array([0, 0, 1, 2, 3, 1])], items)
    newest = encoder.encode_users([np.array([1, 2, 3, 1])], items)
    np.testing.assert_allclose(long, newest, rtol=1e-6)


def test_out_of_range_history_is_a_clear_error(encoder):
    items = encoder.encode_items(TEXTS)
    with pytest.raises(ValueError, match=r"histories\[1\].*\[0, 4\).*\[7\]"):
        encoder.encode_users([np.array([0]), np.array([7])], items)


def test_item_features_must_match_the_backbone_width(encoder):
    with pytest.raises(ValueError, match=r"expected shape \(n, 32\)"):
        encoder.item_vectors_from_features(np.zeros((2, 8), np.float32))


def test_save_load_round_trip(encoder, tmp_path):
    items = encoder.encode_items(TEXTS)
    users = encoder.encode_users([np.array([2, 0])], items, ["a fan of space"])
    encoder.save(tmp_path / "enc")
    meta = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert meta["encoder_hash"] == encoder.encoder_hash and len(encoder.encoder_hash) == 16
    assert meta["backbone"]["hash"] == model_hash(encoder.backbone_name)
    loaded = TwoTowerEncoder.load(tmp_path / "enc")
    assert loaded.encoder_hash == encoder.encoder_hash
    np.testing.assert_array_equal(loaded.encode_items(TEXTS), items)
    again = loaded.encode_users([np.array([2, 0])], items, ["a fan of space"])
    np.testing.assert_array_equal(again, users)


def test_load_rejects_a_corrupt_towers_file(encoder, tmp_path):
    encoder.save(tmp_path / "enc")
    path = tmp_path / "enc" / "towers.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(EncoderLoadError, match="does not match encoder_hash"):
        TwoTowerEncoder.load(tmp_path / "enc")


def test_a_changed_base_model_is_detected(encoder, tiny_bert_dir, tmp_path):
    copy = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, copy)
    encoder.backbone_name, encoder.backbone_hash = str(copy), model_hash(copy)
    encoder.save(tmp_path / "enc")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.3}))
    loaded = TwoTowerEncoder.load(tmp_path / "enc")
    with pytest.raises(EncoderLoadError, match="no longer matches the hash"):
        loaded.encode_items(TEXTS)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderLoadError, match="no encoder.json"):
        TwoTowerEncoder.load(tmp_path)
