"""ONNX Runtime backbone: the same pooled vectors as torch; export cached; caller's model intact."""

import numpy as np
import pytest
import torch

from recsys.encoder import onnx as ox
from recsys.encoder.backbone import load_backbone, pooled_embeddings
from recsys.encoder.features import Featurizer

TEXTS = [
    "the red robot",
    "a love story about the prince and the ghost ship in the jazz city at night",
    "ghost",
    "jazz city night",
    "robot prince story red red red ship ghost",
]


@pytest.fixture(scope="module")
def backbone(tiny_bert_dir):
    return load_backbone(tiny_bert_dir)


@pytest.fixture(scope="module")
def exported(backbone, tmp_path_factory):
    """An OnnxBackbone of the tiny BERT, exported once for the module."""
    return ox.OnnxBackbone(backbone[1], tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("max_padding", [0.0, float("inf")])  # unpadded and padded batches
def test_onnx_pooled_vectors_equal_torch(backbone, exported, max_padding):
    tokenizer, model = backbone
    expected = pooled_embeddings(tokenizer, model, TEXTS, 32, 4, "cpu", max_padding=max_padding)
    found = pooled_embeddings(tokenizer, exported, TEXTS, 32, 4, "cpu", max_padding=max_padding)
    assert found.shape == expected.shape == (len(TEXTS), model.config.hidden_size)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)


def test_export_leaves_the_callers_model_unchanged(backbone, tmp_path):
    tokenizer, model = backbone
    before = pooled_embeddings(tokenizer, model, TEXTS, 32, 8, "cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ox.OnnxBackbone(model, tmp_path)
    after = pooled_embeddings(tokenizer, model, TEXTS, 32, 8, "cpu")
    np.testing.assert_array_equal(before, after)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_export_is_cached_per_weights(backbone, exported, monkeypatch):
    def must_not_export(*args, **kwargs):
        raise AssertionError("the cached .onnx file should have been used")

    monkeypatch.setattr(ox, "export_onnx", must_not_export)
    again = ox.OnnxBackbone(backbone[1], exported.path.parent)
    assert again.path == exported.path


def test_changed_weights_get_their_own_export(backbone, exported, tmp_path):
    import copy

    changed = copy.deepcopy(backbone[1])
    with torch.no_grad():
        changed.encoder.layer[0].output.dense.bias.add_(0.5)
    assert ox.OnnxBackbone(changed, tmp_path).path.name != exported.path.name


def test_damaged_cache_file_is_set_aside_and_reexported(backbone, tmp_path):
    tokenizer, model = backbone
    first = ox.OnnxBackbone(model, tmp_path)
    first.path.write_bytes(b"not an onnx graph")
    with pytest.warns(UserWarning, match="unreadable"):
        repaired = ox.OnnxBackbone(model, tmp_path)
    assert first.path.with_suffix(".damaged").read_bytes() == b"not an onnx graph"
    expected = pooled_embeddings(tokenizer, model, TEXTS, 32, 8, "cpu")
    found = pooled_embeddings(tokenizer, repaired, TEXTS, 32, 8, "cpu")
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)


def test_runtime_setting_is_checked():
    assert ox.resolve_runtime("auto", "cpu") == "onnxruntime"  # installed with the package
    assert ox.resolve_runtime("auto", "cuda") == "torch"
    assert ox.resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(ox.OnnxRuntimeError, match="CPU only"):
        ox.resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(ox.OnnxRuntimeError, match="expected 'auto', 'onnxruntime' or 'torch'"):
        ox.resolve_runtime("tensorrt", "cpu")


def test_pooled_features_under_onnxruntime_match_torch(tiny_bert_dir, tmp_path):
    torch_dir, onnx_dir = tmp_path / "torch", tmp_path / "onnx"
    by_torch = Featurizer(tiny_bert_dir, 32, 2, runtime="torch", cache_dir=torch_dir)(TEXTS)
    by_onnx = Featurizer(tiny_bert_dir, 32, 2, runtime="onnxruntime", cache_dir=onnx_dir)(TEXTS)
    np.testing.assert_allclose(by_onnx, by_torch, rtol=1e-4, atol=1e-5)
    assert len(list(onnx_dir.glob("*.onnx"))) == 1  # the graph is cached beside the features
    assert not list(torch_dir.glob("*.onnx"))
