"""Refit for publishing (issue 15): the published collaborative model learned from every
interaction the nightly was given — including each user's newest, which the split holds out —
while the gate and offline A/B reports judge the candidate fitted without the held-out part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys import bundle
from recsys.config import load_config
from recsys.data.loaders import load_dataset
from recsys.data.split import split_interactions
from recsys.pipeline import abtest
from recsys.pipeline.nightly import run_nightly
from recsys.ranking.model import EVALUATED_RANKER_DIR, RecommenderModel

pytestmark = pytest.mark.slow

N_USERS, N_BASE, PATTERN = 160, 80, ["p0", "p1", "p2"]
GROUP = N_USERS // 2  # users u000..u079 end their history with two pattern items


def _pattern_data(directory: Path) -> Path:
    """Base items drawn at random; the first half of the users end with two of three 'pattern'
    items, which appear nowhere else: they exist only in each user's two newest interactions,
    i.e. only in what the split holds out (valid + test)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        base = rng.choice(N_BASE, 4 if u < GROUP else 10, replace=False)
        newest = (
            rng.choice(PATTERN, 2, replace=False)
            if u < GROUP
            else [f"b{i:03d}" for i in rng.choice(N_BASE, 2)]
        )
        items = [f"b{i:03d}" for i in base] + list(newest)
        rows += [(f"u{u:03d}", item, 1_700_000_000 + 100 * u + t) for t, item in enumerate(items)]
    interactions = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    interactions = interactions.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    ids = [f"b{i:03d}" for i in range(N_BASE)] + PATTERN
    items = pl.DataFrame({"item_id": ids, "title": [f"item {i}" for i in ids]})
    directory.mkdir(parents=True, exist_ok=True)
    interactions.write_csv(directory / "interactions.csv")
    items.write_csv(directory / "items.csv")
    return directory


def _config(refit: bool):
    return load_config(
        None,
        {
            "blend": {"sources": ["collab"], "fixed_weights": {"collab": 1.0}},
            "collab": {
                "model": "als",
                "factors": 8,
                "regularization": 1.0,
                "alpha": 5.0,
                "iterations": 15,
                "threads": 1,
            },  # fmt: skip
            "nightly": {"refit": refit},
            "gate": {"min_users": 1, "floors": {}},
            "eval": {"bootstrap": 200},
        },
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    data = _pattern_data(root / "data")
    out = {"data": data}
    for refit in (True, False):
        workdir = root / f"work-{refit}"
        result = run_nightly(data, _config(refit), workdir, say=lambda m: None, track=False)
        out[refit] = bundle.bundles_dir(workdir) / result.published
    return out


def _pattern_share(model: RecommenderModel) -> float:
    """Share of the pattern users whose top-3 (their own two pattern items excluded) holds the
    third pattern item, the one they have not seen."""
    users = [f"u{u:03d}" for u in range(GROUP)]
    ranked = model.rank_users(users, 3)
    return float(ranked["item_id"].is_in(PATTERN).sum() / GROUP)


def test_published_collab_model_learned_the_newest_interactions(world):
    refit = RecommenderModel.load(world[True])
    plain = RecommenderModel.load(world[False])
    assert _pattern_share(refit) >= 0.8  # the pattern: users with two of p0..p2 get the third
    assert _pattern_share(plain) <= 0.1  # fitted without the held-out part, it never saw them
    manifest = bundle.read_manifest(world[True])
    assert manifest["fit"]["refit"] is True
    counts = (manifest["fit"]["evaluated"]["interactions"], manifest["fit"]["published"]
              ["interactions"])  # fmt: skip
    assert counts[1] - counts[0] == 2 * N_USERS  # every user's valid + test interaction
    assert not (world[False] / EVALUATED_RANKER_DIR).exists()


def test_gate_and_reports_never_score_the_refitted_ranker(world):
    """What the gate and `recsys evaluate` load from a refitted bundle is the candidate fitted on
    the split's training part; scoring the refitted ranker on the same held-out users would count
    interactions it was fitted on (here it finds nearly every held-out pattern item)."""
    config = _config(True)
    dataset = load_dataset(world["data"], config.data)
    split = split_interactions(dataset.interactions, config.split)
    evaluated = RecommenderModel.load(world[True], evaluated=True)
    served = RecommenderModel.load(world[True])
    judged = abtest.evaluate_model(evaluated, dataset, split, config).metrics["recall"].mean()
    leaky = abtest.evaluate_model(served, dataset, split, config).metrics["recall"].mean()
    manifest = bundle.read_manifest(world[True])
    assert judged == pytest.approx(manifest["metrics"]["recall"])  # what the gate judged
    assert leaky > judged + 0.3  # the refitted ranker has seen the test items
    # the evaluated ranker is the one the refit=false run published: fitted on the same split
    plain = RecommenderModel.load(world[False], evaluated=True)
    same = abtest.evaluate_model(plain, dataset, split, config).metrics["recall"].mean()
    assert same == pytest.approx(judged)


def test_tune_step_chooses_the_published_collab_model(world, tmp_path):
    """collab.model "auto" + tune: the nightly's tune step fits the grid on the split, and both
    the evaluated candidate and the refitted bundle use the chosen [collab] values."""
    overrides = {"collab": {"model": "auto", "tune": True, "threads": 1, "epochs": 5}}
    config = _config(True).model_copy(
        update={"collab": _config(True).collab.model_copy(update=overrides["collab"])}
    )
    workdir = tmp_path / "work"
    result = run_nightly(world["data"], config, workdir, say=lambda m: None, track=False)
    steps = {s["step"] for s in result.steps}
    assert {"tune", "collab", "refit"} <= steps
    run = workdir / "runs" / result.run_key / "steps"
    tune = _result(run / "tune.json")
    best = max(tune["scores"], key=lambda s: s["ndcg"])
    assert tune["chosen"]["model"] == best["config"]["model"] in ("als", "lightfm")
    assert len(tune["scores"]) == 12 and not tune["reused"]
    for step in ("collab", "refit"):
        assert _result(run / f"{step}.json")["model"] == tune["chosen"]["model"]
    published = bundle.bundles_dir(workdir) / result.published
    manifest = bundle.read_manifest(published)
    assert manifest["fit"]["published"]["sources_key"] == _result(run / "refit.json")["key"]
    assert manifest["fit"]["collab"] == tune["chosen"]  # what was fitted, not "auto"
    assert (workdir / "cache" / "tune" / f"{tune['key']}.json").is_file()


def _result(path: Path) -> dict:
    import json

    return json.loads(path.read_text())["result"]


def test_published_weights_are_learned_where_the_sources_stand_as_published(world, tmp_path):
    """[nightly] refit_weights: the published ranker's weights are learned once more with the
    frame sources fitted on train + valid and scored on the test part (which they never saw);
    the evaluated candidate keeps the weights learned on valid. Here the pattern items exist
    only in each pattern user's two newest interactions: fitted on train, popularity has never
    seen them (valid gives it no credit); fitted on train + valid it has seen one per user and
    ranks the pattern first, which is what the refitted, published popularity does for the
    future."""
    config = _config(True)
    config = config.model_copy(
        update={"blend": config.blend.model_copy(
            update={"sources": ["collab", "popularity"], "fixed_weights": None}
        )}
    )  # fmt: skip
    workdir = tmp_path / "work"
    result = run_nightly(world["data"], config, workdir, say=lambda m: None, track=False)
    run = workdir / "runs" / result.run_key / "steps"
    step = _result(run / "refit_weights.json")
    published = bundle.bundles_dir(workdir) / result.published
    manifest = bundle.read_manifest(published)
    fitted = manifest["fit"]
    dataset = load_dataset(world["data"], config.data)
    split = split_interactions(dataset.interactions, config.split)
    assert fitted["published"]["weights_learned_on"] == "test"
    assert fitted["weights"]["interactions"] == split.train.height + split.valid.height
    assert fitted["weights"]["sources_key"] == step["key"] != fitted["evaluated"]["sources_key"]
    import json

    served = json.loads((published / "ranker" / "weights.json").read_text())
    evaluated = json.loads((published / EVALUATED_RANKER_DIR / "weights.json").read_text())
    assert served["default"] == step["weights"]["default"]
    assert evaluated["default"] == _result(run / "weights.json")["weights"]["default"]
    assert step["weights"]["stats"]["users"]["all"] == split.test["user_idx"].n_unique()
    assert served["default"]["popularity"] > evaluated["default"]["popularity"]

    off = config.model_copy(
        update={"nightly": config.nightly.model_copy(update={"refit_weights": False})}
    )
    result = run_nightly(world["data"], off, tmp_path / "off", say=lambda m: None, track=False)
    assert "refit_weights" not in {s["step"] for s in result.steps}
    published = bundle.bundles_dir(tmp_path / "off") / result.published
    assert bundle.read_manifest(published)["fit"]["published"]["weights_learned_on"] == "valid"
    served = json.loads((published / "ranker" / "weights.json").read_text())
    assert served["default"] == evaluated["default"]


def test_refit_frames_keep_the_recency_chosen_on_the_training_part(world, tmp_path):
    """An item-graph source's recency "auto" is a hyperparameter: the collab step chooses it on
    the split's training part, records it, and the refit frames (train + valid, everything) are
    fitted with that value rather than choosing again on data the choice must not see."""
    import json

    from recsys.pipeline import fit

    config = _config(True)
    config = config.model_copy(
        update={"blend": config.blend.model_copy(
            update={"sources": ["collab", "neighbors"], "fixed_weights": None}
        )}
    )  # fmt: skip
    assert config.neighbors.recency == "auto"
    workdir = tmp_path / "work"
    result = run_nightly(world["data"], config, workdir, say=lambda m: None, track=False)
    run = workdir / "runs" / result.run_key / "steps"
    chosen = _result(run / "collab.json")["recency"]
    assert set(chosen) == {"neighbors"} and 0 < chosen["neighbors"] < 1
    fixed = fit.with_recency(config, chosen)
    assert fixed.neighbors.recency == chosen["neighbors"] and fixed.collab == config.collab
    dataset = load_dataset(world["data"], config.data)
    split = split_interactions(dataset.interactions, config.split)
    frames = {
        "refit_weights": pl.concat([split.train, split.valid]),
        "refit": dataset.interactions,
    }
    for step, frame in frames.items():
        recorded = _result(run / f"{step}.json")
        assert recorded["key"] == fit.frame_sources_key(dataset, frame, fixed)
        assert recorded["key"] != fit.frame_sources_key(dataset, frame, config)  # not "auto"
        saved = json.loads((run.parent / step / "neighbors" / "neighbors.json").read_text())
        assert saved["config"]["recency"] == chosen["neighbors"]
    published = bundle.bundles_dir(workdir) / result.published
    served = json.loads((published / "ranker" / "neighbors" / "neighbors.json").read_text())
    assert served["config"]["recency"] == chosen["neighbors"]
