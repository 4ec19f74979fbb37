"""Trainable text sources: the top-layer state cache and token sources reproduce the full BERT."""

import numpy as np
import pytest
import torch

from recsys.encoder.backbone import load_backbone, pooled_embeddings
from recsys.encoder.features import Featurizer
from recsys.training.text_sources import (
    StateSource,
    TokenSource,
    pooled_all,
    top_layer_inputs,
    top_layers_model,
)

TEXTS = ["the red robot", "a love story about the prince", "ghost ship", "jazz city night"]


@pytest.mark.parametrize("top", [1, 2])
def test_top_layers_over_cached_states_reproduce_the_full_bert(tiny_bert_dir, tmp_path, top):
    tokenizer, bert = load_backbone(tiny_bert_dir)
    base = Featurizer(tiny_bert_dir, 16, 2, cache_dir=tmp_path, loader=lambda: (tokenizer, bert))
    states, lengths = top_layer_inputs(base, TEXTS, top)
    assert states.shape == (len(TEXTS), 16, bert.config.hidden_size)
    source = StateSource(top_layers_model(bert, top).eval(), states, lengths)
    with torch.no_grad():
        via_states = pooled_all(source, batch_size=3).numpy()
    full = pooled_embeddings(tokenizer, bert, TEXTS, 16, 4, "cpu")
    np.testing.assert_allclose(via_states, full, rtol=2e-2, atol=2e-3)  # float16 cache
    tokens = TokenSource(tokenizer, bert, TEXTS, 16)
    np.testing.assert_allclose(pooled_all(tokens, 3).numpy(), full, rtol=1e-5, atol=1e-5)


def test_top_layers_out_of_range_is_an_error(tiny_bert_dir):
    with pytest.raises(ValueError, match="trainable_layers must be in 1..2"):
        top_layer_inputs(Featurizer(tiny_bert_dir, 16, 2), TEXTS, 3)
