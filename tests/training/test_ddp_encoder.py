"""The nightly's data-parallel encoder training (recsys.training.ddp_encoder) as one rank in this
process, on the known-answer world: the prepared inputs, learning above chance, the encoder
directory (the local loop's files) scoring as rank 0's validation said; configs the loop cannot
train are refused before anything runs. Several ranks: tests/training/test_ddp.py (the step's
equivalence), tests/training/test_ddp_torchrun.py and tests/e2e/test_nightly_ray.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from encoder_world import encoder_config

from recsys.config import EncoderConfig, TextConfig
from recsys.encoder.model import TwoTowerEncoder
from recsys.text.documents import item_documents, profile_texts
from recsys.training.ddp_encoder import RESULT, global_batch, train_encoder_ranks
from recsys.training.ddp_inputs import (
    DistributedTrainingError,
    check_config,
    prepare_inputs,
    read_arrays,
    validation_data,
)
from recsys.training.validation import ranking_metrics


def _config(bert: str, **overrides) -> EncoderConfig:
    base = dict(batch_size=32, epochs=12, patience=12, lr=5e-3, dropout=0.0)
    return encoder_config(bert, **{**base, **overrides})


def test_one_rank_learns_the_world_and_saves_the_local_encoder_files(
    world, tiny_bert_dir, tmp_path
):
    dataset, split = world
    inputs, out = tmp_path / "inputs", tmp_path / "enc"
    config = _config(tiny_bert_dir)
    meta = prepare_inputs(dataset, split, config, TextConfig(), tmp_path / "cache", inputs)
    arrays = read_arrays(inputs)
    sequences, valid = validation_data(arrays)
    has_profile = arrays["has_profile"]
    # every next item of every train sequence, the first one too where a profile predicts it
    assert meta["pairs"] == sum(
        len(s) - (0 if p else 1) for s, p in zip(sequences, has_profile, strict=True)
    )
    assert len(arrays["history"]) == meta["pairs"]
    assert arrays["history"].shape[1] == min(config.history_len, max(map(len, sequences)) - 1)

    train_encoder_ranks({"inputs": str(inputs), "out": str(out), "result": str(tmp_path / RESULT)})
    result = json.loads((tmp_path / RESULT).read_text())
    ndcg = [h["valid_ndcg"] for h in result["history"]]
    assert result["world"] == 1 and result["best_epoch"] == int(np.argmax(ndcg))
    discounts = sum(1 / np.log2(r + 1) for r in range(1, 11))  # a random ranking's NDCG@10:
    chance = np.mean([discounts / (dataset.n_items - len(h)) for h in valid.histories])
    assert max(ndcg) > 2 * chance, (ndcg, chance)  # topics and order are learnable
    assert sorted(p.name for p in out.iterdir()) == ["encoder.json", "towers.safetensors"]
    loaded = TwoTowerEncoder.load(out)  # the best epoch's towers, as rank 0 validated them
    items = loaded.encode_items(item_documents(dataset, TextConfig()))
    profiles = [profile_texts(dataset)[u] for u in valid.users]
    users = loaded.encode_users(valid.histories, items, profiles)
    assert ranking_metrics(users, items, valid)["ndcg"] == pytest.approx(max(ndcg), abs=1e-4)


@pytest.mark.parametrize(
    "setting",
    [{"path": "full"}, {"trainable_layers": 1}, {"user_tower": "bert"}, {"softmax": "full"}],
)
def test_configs_the_loop_cannot_train_are_refused(tiny_bert_dir, setting):
    with pytest.raises(DistributedTrainingError) as error:
        check_config(_config(tiny_bert_dir, **setting))
    message = str(error.value)
    assert next(iter(setting)) in message and "train_workers = 1" in message


def test_global_batch_is_equal_shards():
    assert global_batch(64, 2, 1000) == 64
    assert global_batch(65, 2, 1000) == 64  # rounded down to a multiple of the ranks
    assert global_batch(64, 4, 10) == 8  # no more than the pairs
    assert global_batch(1, 4, 10) == 4  # at least one row per rank
    with pytest.raises(ValueError, match="3 training pairs cannot be shared equally by 4"):
        global_batch(64, 4, 3)
