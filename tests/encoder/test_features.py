"""Frozen features: the disk cache (hits, incremental reuse)."""

import numpy as np

from recsys.encoder.backbone import load_backbone, pooled_embeddings
from recsys.encoder.features import Featurizer

TEXTS = ["the red robot", "a love story about the prince", "ghost ship", "jazz city night"]


def _counting_loader(path):
    """A real backbone whose forward passes count the texts they embed."""
    tokenizer, model = load_backbone(path)
    seen = {"texts": 0, "loads": 0}
    model.register_forward_hook(lambda m, args, kwargs, out: seen.__setitem__(
        "texts", seen["texts"] + kwargs["input_ids"].shape[0]), with_kwargs=True)  # fmt: skip

    def load():
        seen["loads"] += 1
        return tokenizer, model

    return load, seen


def test_cache_hit_needs_no_backbone(tiny_bert_dir, tmp_path):
    load, seen = _counting_loader(tiny_bert_dir)
    first = Featurizer(tiny_bert_dir, 32, 2, cache_dir=tmp_path, loader=load)(TEXTS)
    assert seen["texts"] == len(TEXTS)

    def must_not_load():
        raise AssertionError("the cache should have answered")

    again = Featurizer(tiny_bert_dir, 32, 2, cache_dir=tmp_path, loader=must_not_load)(TEXTS)
    np.testing.assert_array_equal(first, again)
    tokenizer, model = load()
    direct = pooled_embeddings(tokenizer, model, TEXTS, 32, 4, "cpu")
    np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)


def test_a_changed_catalog_embeds_only_new_texts(tiny_bert_dir, tmp_path):
    load, seen = _counting_loader(tiny_bert_dir)
    old = Featurizer(tiny_bert_dir, 32, 8, cache_dir=tmp_path, loader=load)(TEXTS)
    changed = [TEXTS[0], "a new horror movie", TEXTS[2], TEXTS[3]]
    seen["texts"] = 0
    new = Featurizer(tiny_bert_dir, 32, 8, cache_dir=tmp_path, loader=load)(changed)
    assert seen["texts"] == 1
    np.testing.assert_array_equal(new[[0, 2, 3]], old[[0, 2, 3]])
    assert not np.allclose(new[1], old[1])


def test_max_length_is_part_of_the_key(tiny_bert_dir, tmp_path):
    load, seen = _counting_loader(tiny_bert_dir)
    Featurizer(tiny_bert_dir, 32, 8, cache_dir=tmp_path, loader=load)(TEXTS)
    Featurizer(tiny_bert_dir, 3, 8, cache_dir=tmp_path, loader=load)(TEXTS)
    assert seen["texts"] == 2 * len(TEXTS)
