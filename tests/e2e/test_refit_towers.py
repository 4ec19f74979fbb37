"""Refit of the text towers for publishing (issue 15): the published towers are the evaluated
encoder trained [nightly] refit_towers_epochs more epochs over every interaction, the newest
ones (which the split holds out) included; the gate, the A/B report and the published weights'
test-part scores still come from the split-trained towers, which never saw the held-out part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import build_tiny_bert, fast_config, small_sample

from recsys import bundle
from recsys.config import load_config
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.encoder.model import TwoTowerEncoder
from recsys.evaluation.metrics import per_user_metrics
from recsys.pipeline.fit import eval_set
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import EVALUATED_RANKER_DIR, RecommenderModel
from recsys.training.train import continue_training

pytestmark = pytest.mark.slow
EPOCHS = 3  # refit epochs in the "on" run: enough for the held-out part to show


def _config(bert: Path, epochs: int):
    return fast_config(
        bert,
        blend={"sources": ["text", "popularity"]},
        nightly={"refit_towers_epochs": epochs},
        gate={"min_users": 1, "floors": {}},
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit-towers")
    bert = build_tiny_bert(root / "bert")
    data = small_sample(root / "data", seed=3, n_users=250, n_items=300)
    out = {"bert": bert, "data": data}
    for epochs in (EPOCHS, 0):
        work = root / f"work-{epochs}"
        result = run_nightly(
            data, _config(bert, epochs), work, say=lambda m: None, track=False, progress=False
        )
        out[epochs] = {"work": work, "result": result, "steps": [s["step"] for s in result.steps]}
        out[epochs]["bundle"] = bundle.bundles_dir(work) / result.published
    return out


def _result(world, epochs: int, step: str) -> dict:
    run = world[epochs]["work"] / "runs" / world[epochs]["result"].run_key / "steps"
    return json.loads((run / f"{step}.json").read_text())["result"]


def _encoder_hash(directory: Path) -> str:
    return json.loads((directory / "encoder.json").read_text())["encoder_hash"]


def test_published_towers_are_the_evaluated_ones_trained_on_every_interaction(world):
    steps = world[EPOCHS]["steps"]
    refit = ["refit_weights", "refit_encoder", "refit_embed", "refit_index", "refit_users"]
    assert [s for s in steps if s in refit] == refit  # the weights first: towers unseen by test
    assert steps.index("refit_users") < steps.index("published")
    step = _result(world, EPOCHS, "refit_encoder")
    evaluated_hash = _result(world, EPOCHS, "encoder")["encoder_hash"]
    assert step["epochs"] == EPOCHS and step["refit_from"] == evaluated_hash
    assert step["encoder_hash"] != evaluated_hash

    published = world[EPOCHS]["bundle"]
    manifest = bundle.read_manifest(published)
    dataset = load_dataset(world["data"], _config(world["bert"], EPOCHS).data)
    towers = manifest["fit"]["published"]["towers"]
    assert towers == {
        "encoder_hash": step["encoder_hash"],
        "refit_from": evaluated_hash,
        "epochs": EPOCHS,
        "interactions": dataset.interactions.height,
    }
    assert manifest["encoder_hash"] == step["encoder_hash"]  # what the bundle serves
    assert manifest["fit"]["evaluated"]["encoder_hash"] == evaluated_hash
    assert _encoder_hash(published / "encoder") == step["encoder_hash"]
    served = RecommenderModel.load(published)
    evaluated = RecommenderModel.load(published, evaluated=True)
    served_vectors = served.ranker.sources["text"].item_vectors
    evaluated_vectors = evaluated.ranker.sources["text"].item_vectors
    assert served_vectors.shape == evaluated_vectors.shape
    assert not np.allclose(served_vectors, evaluated_vectors)  # re-embedded by the refit towers
    assert (published / EVALUATED_RANKER_DIR).is_dir()


def test_gate_and_published_weights_never_see_the_refit_towers(world):
    """The run without tower refit judged the same candidate: the refit towers enter after the
    gate, and the published weights are scored with towers that never saw the test part. The
    refit towers have seen the split's
    held-out part, so on it they score better than the same bundle without them — which is why
    they are never scored there."""
    on = bundle.read_manifest(world[EPOCHS]["bundle"])
    off = bundle.read_manifest(world[0]["bundle"])
    assert on["metrics"] == pytest.approx(off["metrics"])
    assert _result(world, EPOCHS, "weights")["weights"] == _result(world, 0, "weights")["weights"]
    # the published weights are learned with towers trained as the published ones, but on
    # train + valid only, and scored on the test part
    shifted = _result(world, EPOCHS, "refit_weights")["towers"]
    config = _config(world["bert"], EPOCHS)
    dataset = load_dataset(world["data"], config.data)
    split = split_interactions(dataset.interactions, config.split)
    assert shifted["interactions"] == split.train.height + split.valid.height
    assert shifted["epochs"] == EPOCHS
    published = on["fit"]["published"]["towers"]["encoder_hash"]
    assert shifted["encoder_hash"] not in (published, on["fit"]["evaluated"]["encoder_hash"])
    assert _result(world, 0, "refit_weights")["towers"] is None
    assert "refit_encoder" not in world[0]["steps"] and "towers" not in off["fit"]["published"]
    assert off["encoder_hash"] == off["fit"]["evaluated"]["encoder_hash"]

    held = eval_set([split.train, split.valid], split.test, dataset.n_users)

    def held_out_recall(bundle_dir: Path) -> float:
        """The published text source alone on the split's test part."""
        text = RecommenderModel.load(bundle_dir).ranker.sources["text"]
        ranked, _ = text.recommend(held.queries, 10, held.exclude)
        return float(per_user_metrics(ranked, held.relevant, 10, ("recall",))["recall"].mean())

    assert held_out_recall(world[EPOCHS]["bundle"]) > held_out_recall(world[0]["bundle"])


def test_continue_training_says_what_it_expects(world, tmp_path):
    encoder = TwoTowerEncoder.load(Path(_result(world, 0, "encoder")["encoder_dir"]))
    config = load_config(None, {})
    dataset = load_dataset(world["data"], config.data)
    with pytest.raises(ValueError, match="expected epochs >= 1, found 0"):
        continue_training(encoder, dataset, dataset.interactions, config.text, 0, tmp_path / "a")
    encoder.config = encoder.config.model_copy(update={"trainable_layers": 1})
    with pytest.raises(ValueError, match="expected a frozen-path encoder"):
        continue_training(encoder, dataset, dataset.interactions, config.text, 1, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
