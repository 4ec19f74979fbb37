"""A bundle is hashed once per host (recsys.bundle_verified): concurrent workers wait for the one
that hashes, later loads skip hashing, any change to the files is hashed again and refused; and a
loaded bundle's arrays are memory-mapped, ranking exactly as private copies do."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from blend_world import make_world

from recsys import bundle, retention
from recsys.bundle_arrays import MMAP_ENV, is_mapped
from recsys.bundle_verified import RACY_SECONDS, marker_path, verify_once
from recsys.config import BlendConfig, CollabConfig, IndexConfig
from recsys.ids import IdMap
from recsys.index.faiss_index import VectorIndex
from recsys.ranking.blend import BlendedRanker
from recsys.ranking.collab import CollabRecommender
from recsys.ranking.content import ContentRecommender
from recsys.ranking.model import RecommenderModel, write_model_files
from recsys.ranking.popularity import PopularityRecommender
from recsys.ranking.segments import SegmentWeights
from recsys.ranking.user_vectors import HistoryMeanEncoder
from recsys.schema import ITEM_ID, ITEM_IDX


def _settle() -> None:
    """Files written less than RACY_SECONDS ago are never trusted to a marker (see the module)."""
    time.sleep(RACY_SECONDS + 0.1)


def _publish(workdir, version: str):
    with bundle.staging(workdir, version) as stage:
        (stage / "vectors.npy").write_bytes(os.urandom(1 << 20))
        (stage / "ranker").mkdir()
        (stage / "ranker" / "weights.json").write_text("{}")
        return bundle.publish(stage, workdir, version, {})


@pytest.fixture
def published(tmp_path):
    path = _publish(tmp_path, "v1")
    _settle()
    return path


VERIFY = (
    "import sys; from recsys.bundle_verified import verify_once; print(verify_once(sys.argv[1])[1])"
)


def test_four_processes_hash_once_then_nobody_hashes(published):
    workers = [
        subprocess.Popen([sys.executable, "-c", VERIFY, str(published)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    hashed = sorted(w.communicate(timeout=120)[0].decode().strip() for w in workers)
    assert hashed == ["False", "False", "False", "True"]  # one hashed, three read its marker
    marker = json.loads(marker_path(published).read_text())
    assert marker["version"] == "v1" and "vectors.npy" in marker["signature"]["files"]
    assert verify_once(published)[1] is False


def _flip_a_byte(bundle_dir):
    target = bundle_dir / "vectors.npy"
    before = target.stat()
    with open(target, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime still moves


def _replace_by_rename(bundle_dir):
    (bundle_dir / "new.tmp").write_bytes(os.urandom(1 << 20))
    os.replace(bundle_dir / "new.tmp", bundle_dir / "vectors.npy")


def _edit_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"]["vectors.npy"] = "0" * 64
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {  # what is done to a verified bundle -> what verification then says
    "flip a byte, same size, mtime put back": (_flip_a_byte, "sha256 mismatch"),
    "add a file": (lambda p: (p / "extra.bin").write_bytes(b"x"), "not in the manifest"),
    "replace a file by rename": (_replace_by_rename, "sha256 mismatch"),
    "edit the manifest": (_edit_manifest, "sha256 mismatch"),
}


def test_any_change_after_the_marker_is_hashed_again_and_refused(tmp_path):
    bundles = {name: _publish(tmp_path, f"d{n}") for n, name in enumerate(DAMAGE)}
    _settle()
    for name, (damage, message) in DAMAGE.items():
        assert verify_once(bundles[name])[1] is True
        assert verify_once(bundles[name])[1] is False
        damage(bundles[name])
        with pytest.raises(bundle.BundleError, match=message):
            verify_once(bundles[name])


def test_files_changed_within_a_clock_tick_of_hashing_get_no_marker(tmp_path):
    with bundle.staging(tmp_path, "v2") as stage:
        (stage / "vectors.npy").write_bytes(b"fresh")
        fresh = bundle.publish(stage, tmp_path, "v2", {})
    assert verify_once(fresh)[1] is True
    assert not marker_path(fresh).exists()  # a change in the same tick could go unseen
    assert verify_once(fresh)[1] is True


def test_pruning_a_bundle_removes_its_markers(tmp_path, published):
    verify_once(published)
    assert marker_path(published).exists()
    with bundle.staging(tmp_path, "v3") as stage:
        (stage / "a.bin").write_bytes(b"a")
        bundle.publish(stage, tmp_path, "v3", {})
    assert retention.prune_bundles(tmp_path, keep=1) == ["v1"]
    assert not list(marker_path(published).parent.glob("v1@*"))


CONFIG = BlendConfig(sources=["text", "collab", "popularity"], candidates_per_source=40)


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory):
    """A published bundle of every array kind the API maps: item and known-user vectors, a
    FAISS index, ALS factors, popularity, histories and the precomputed top-k."""
    world = make_world(n_users=40)
    counts = np.zeros((len(world.histories), world.n_items), dtype=np.float32)
    for user, history in enumerate(world.histories):
        counts[user, history] = 1.0
    text = ContentRecommender(
        world.item_vectors,
        HistoryMeanEncoder(),
        VectorIndex.build(world.item_vectors, IndexConfig(factory="Flat", use_gpu="never")),
        known_user_vectors=np.random.default_rng(0).normal(size=(40, world.item_vectors.shape[1])),
    )
    sources = {
        "text": text,
        "collab": CollabRecommender.fit(
            sp.csr_matrix(counts), CollabConfig(model="als", factors=8)
        ),
        "popularity": PopularityRecommender.fit(sp.csr_matrix(counts)),
    }
    weights = SegmentWeights.fixed({"text": 0.5, "collab": 0.3, "popularity": 0.2}, [0, 5, 50])
    ranker = BlendedRanker(sources, weights, CONFIG)
    items = pl.DataFrame(
        {
            ITEM_IDX: np.arange(world.n_items, dtype=np.int32),
            ITEM_ID: [f"i{i}" for i in range(world.n_items)],
        }
    )
    users = IdMap([f"u{u}" for u in range(len(world.histories))])
    workdir = tmp_path_factory.mktemp("served")
    with bundle.staging(workdir, "m1") as stage:
        write_model_files(stage, ranker, items, users, world.histories, precompute_k=10)
        path = bundle.publish(stage, workdir, "m1", {})
    _settle()
    return path


def test_a_loaded_bundle_maps_its_arrays_and_ranks_as_private_copies(served_bundle, monkeypatch):
    model = RecommenderModel.load(served_bundle)
    text, collab = model.ranker.sources["text"], model.ranker.sources["collab"].model
    pop = model.ranker.sources["popularity"]
    mapped = {
        "item_vectors": text.item_vectors,
        "user_vectors": text.known_user_vectors,
        "item_factors": collab.item_factors,
        "user_factors": collab.user_factors,
        "popularity": pop.popularity,
        "history": model._history,
        "topk": model.topk.item_idx,
        "topk scores": model.topk.score,
    }
    assert {name: is_mapped(a) for name, a in mapped.items()} == dict.fromkeys(mapped, True)
    assert text.index.mmapped
    monkeypatch.setenv(MMAP_ENV, "0")
    private = RecommenderModel.load(served_bundle, verify_files=False)
    assert not is_mapped(private.ranker.sources["text"].item_vectors)
    assert not private.ranker.sources["text"].index.mmapped
    for user in ("u0", "u7", "u39"):
        for kwargs in ({}, {"exclude": ["i1"]}, {"item_ids": ["i3"]}):
            assert model.recommend(user_id=user, **kwargs) == private.recommend(
                user_id=user, **kwargs
            )
    assert model.similar("i5") == private.similar("i5")


def test_a_second_load_on_the_host_skips_hashing(served_bundle, caplog):
    with caplog.at_level(logging.INFO, logger="recsys.bundle"):
        RecommenderModel.load(served_bundle)
        RecommenderModel.load(served_bundle)
    said = [r.getMessage() for r in caplog.records if r.name == "recsys.bundle"]
    assert said and all("verified earlier on this host" in m for m in said), said
