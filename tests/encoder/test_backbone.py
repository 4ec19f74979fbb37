"""Backbone: model resolution, offline loading, length-bucketed mean pooling, weight hashes."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from recsys.encoder.backbone import (
    BackboneError,
    length_batches,
    load_backbone,
    mean_pool,
    model_hash,
    pick_device,
    pooled_embeddings,
    resolve_model_path,
)

TEXTS = [
    "toy story adventure animation children comedy fantasy",
    "heat",
    "",
    "the quick brown fox jumps over the lazy dog " * 6,  # longer than max_length below
    "grumpier old men comedy romance",
    "heat",  # a duplicate: same vector as row 1
    "sudden death action",
]


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir):
    torch.set_num_threads(1)
    return load_backbone(tiny_bert_dir)


def _reference(tokenizer, model, texts, max_length):
    """One text at a time, no padding at all, plain mean over the tokens."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"]).last_hidden_state  # (1, seq, hidden)
            rows.append(hidden[0].mean(dim=0).numpy())
    return np.stack(rows)


def test_resolve_packaged_and_local(tiny_bert_dir):
    packaged = resolve_model_path("packaged:all-MiniLM-L6-v2")
    assert Path(packaged, "config.json").is_file()
    assert resolve_model_path(tiny_bert_dir) == str(Path(tiny_bert_dir).resolve())


@pytest.mark.parametrize(
    "name, words",
    [
        ("packaged:no-such-model", "unknown packaged model"),
        ("/nonexistent/dir/model", "not found"),
        ("nobody-here/certainly-not-a-cached-model-0", "not found in the local Hugging Face cache"),
    ],
)
def test_resolve_errors_say_what_was_expected(name, words):
    with pytest.raises(BackboneError, match=words):
        resolve_model_path(name)


def test_resolve_rejects_directory_without_config(tmp_path):
    with pytest.raises(BackboneError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_load_backbone_is_eval_mode(tiny):
    tokenizer, model = tiny
    assert not model.training
    assert model.config.hidden_size == 32
    assert tokenizer.pad_token_id is not None


def test_pooled_order_restored_and_equals_unbucketed_reference(tiny):
    tokenizer, model = tiny
    got = pooled_embeddings(tokenizer, model, TEXTS, max_length=16, batch_size=3, device="cpu")
    want = _reference(tokenizer, model, TEXTS, max_length=16)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got[1], got[5])
    # not normalised: mean pooling of a random BERT has norms far from 1
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("batch_size, max_padding", [(1, 0.05), (2, 0.0), (64, float("inf"))])
def test_batching_does_not_change_vectors(tiny, batch_size, max_padding):
    tokenizer, model = tiny
    base = pooled_embeddings(tokenizer, model, TEXTS, 16, batch_size=4, device="cpu")
    other = pooled_embeddings(
        tokenizer, model, TEXTS, 16, batch_size, "cpu", max_padding=max_padding
    )
    np.testing.assert_allclose(other, base, atol=1e-5)


def test_truncation_to_max_length(tiny):
    tokenizer, model = tiny
    long_text = TEXTS[3]
    short = pooled_embeddings(tokenizer, model, [long_text], 8, 2, "cpu")
    longer = pooled_embeddings(tokenizer, model, [long_text], 32, 2, "cpu")
    np.testing.assert_allclose(short, _reference(tokenizer, model, [long_text], 8), atol=1e-5)
    assert not np.allclose(short, longer, atol=1e-3)


def test_empty_input_and_bad_input(tiny):
    tokenizer, model = tiny
    assert pooled_embeddings(tokenizer, model, [], 16, 4, "cpu").shape == (0, 32)
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, found int"):
        pooled_embeddings(tokenizer, model, ["a", 3], 16, 4, "cpu")
    with pytest.raises(BackboneError, match="exceeds the model's 128 positions"):
        pooled_embeddings(tokenizer, model, ["a"], 512, 4, "cpu")
    with pytest.raises(BackboneError, match="batch_size"):
        pooled_embeddings(tokenizer, model, ["a"], 16, 0, "cpu")


def test_progress_bar_when_asked(tiny, capsys):
    tokenizer, model = tiny
    pooled_embeddings(tokenizer, model, TEXTS, 16, 2, "cpu", progress=True)
    assert "embed" in capsys.readouterr().err
    pooled_embeddings(tokenizer, model, TEXTS, 16, 2, "cpu", progress=False)
    assert "embed" not in capsys.readouterr().err


@given(
    lengths=st.lists(st.integers(1, 60), max_size=80),
    batch_size=st.integers(1, 17),
    max_padding=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_length_batches_cover_every_row_with_bounded_padding(lengths, batch_size, max_padding):
    batches = length_batches(lengths, batch_size, max_padding)
    assert sorted(row for batch in batches for row in batch) == list(range(len(lengths)))
    for batch in batches:
        sizes = [lengths[row] for row in batch]
        assert 1 <= len(batch) <= batch_size
        assert sizes == sorted(sizes, reverse=True)  # longest first, as documented
        assert max(sizes) * len(sizes) <= (1 + max_padding) * sum(sizes) + 1e-9


def test_length_batches_fill_up_when_lengths_are_equal():
    assert length_batches([7] * 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # a long outlier gets a batch of its own rather than padding the others to its length
    assert length_batches([5, 5, 40, 5], 4) == [[2], [0, 1, 3]]
    # no padding bound: plain batches of batch_size over the sorted order
    assert length_batches([3, 1, 2, 5], 2, float("inf")) == [[3, 0], [2, 1]]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask).numpy(), [[2.0, 3.0]])


def test_pick_device():
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"
    with pytest.raises(BackboneError, match="found 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackboneError, match="no CUDA GPU"):
            pick_device("cuda")


def test_pickled_weights_are_refused(tiny_bert_dir, tmp_path):
    shutil.copytree(tiny_bert_dir, tmp_path / "pickled")
    _, model = load_backbone(tiny_bert_dir)
    (tmp_path / "pickled" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(BackboneError, match="no \\*.safetensors weights"):
        load_backbone(str(tmp_path / "pickled"))


def test_model_hash_of_files_follows_the_weights(tiny_bert_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    assert model_hash(tiny_bert_dir) == model_hash(copy)
    assert len(model_hash(copy)) == 16
    _, model = load_backbone(str(copy))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0, 0] += 1.0
    model.save_pretrained(copy, safe_serialization=True)
    assert model_hash(copy) != model_hash(tiny_bert_dir)
    with pytest.raises(BackboneError, match=r"no \*\.safetensors weights file"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        model_hash(tmp_path / "empty")


def test_model_hash_of_loaded_model(tiny_bert_dir, tmp_path):
    shutil.copytree(tiny_bert_dir, tmp_path / "elsewhere")
    _, first = load_backbone(tiny_bert_dir)
    _, second = load_backbone(str(tmp_path / "elsewhere"))
    assert model_hash(first) == model_hash(second)  # where it was loaded from does not count
    with torch.no_grad():
        second.encoder.layer[0].output.dense.bias[0] += 1e-3
    assert model_hash(first) != model_hash(second)


@pytest.mark.integration
def test_packaged_minilm_matches_sentence_transformers():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Toy Story (1995) Adventure|Animation", "Heat (1995) Action|Crime", "a", ""]
    tokenizer, model = load_backbone("packaged:all-MiniLM-L6-v2")
    ours = pooled_embeddings(tokenizer, model, texts, 256, 2, "cpu")
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    st = sentence_transformers.SentenceTransformer(
        resolve_model_path("packaged:all-MiniLM-L6-v2"), device="cpu"
    )
    theirs = st.encode(texts, batch_size=2, normalize_embeddings=True)
    assert np.min(np.sum(ours * theirs, axis=1)) > 0.9999
