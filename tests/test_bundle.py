"""Bundle publishing: manifest last, verification, atomic pointers, rollback, pruning."""

import json

import pytest

from recsys import bundle, retention


def _publish(workdir, version, payload=b"vectors"):
    with bundle.staging(workdir, version) as stage:
        (stage / "item_vectors.npy").write_bytes(payload)
        (stage / "collab").mkdir()
        (stage / "collab" / "factors.npz").write_bytes(payload * 2)
        return bundle.publish(stage, workdir, version, {"metrics": {"ndcg": 0.1}})


def test_publish_writes_manifest_with_every_file_hash(tmp_path):
    path = _publish(tmp_path, "v1")
    manifest = bundle.verify(path)
    assert manifest["version"] == "v1"
    assert set(manifest["files"]) == {"item_vectors.npy", "collab/factors.npz"}
    assert not list((tmp_path / "bundles").glob(".staging-*"))


def test_failed_staging_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with bundle.staging(tmp_path, "v1") as stage:
            (stage / "half.npy").write_bytes(b"x")
            raise RuntimeError("crash while writing")
    assert list((tmp_path / "bundles").iterdir()) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "item_vectors.npy").write_bytes(b"vectorz"), "sha256 mismatch"),
        (lambda p: (p / "item_vectors.npy").unlink(), "missing"),
        (lambda p: (p / "extra.bin").write_bytes(b"?"), "not in the manifest"),
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
    ],
)
def test_verify_refuses_damaged_bundles(tmp_path, damage, message):
    path = _publish(tmp_path, "v1")
    damage(path)
    with pytest.raises(bundle.BundleError, match=message):
        bundle.verify(path)


def test_verify_refuses_incompatible_format(tmp_path):
    path = _publish(tmp_path, "v1")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match="format_version 999"):
        bundle.verify(path)


def test_pointer_rollback_and_prune(tmp_path):
    for version in ("v1", "v2", "v3", "v4"):
        _publish(tmp_path, version, payload=version.encode())
        bundle.set_pointer(tmp_path, version, reason="promote")
    assert bundle.read_pointer(tmp_path) == "v4"
    assert bundle.previous_version(tmp_path) == "v3"
    assert bundle.rollback(tmp_path) == "v3"
    assert bundle.current_bundle(tmp_path) == tmp_path / "bundles" / "v3"
    bundle.set_pointer(tmp_path, "v4", name="CHALLENGER")
    removed = retention.prune_bundles(tmp_path, keep=1)
    # v3 is CURRENT, v4 CHALLENGER, v2 the champion a rollback goes back to: only v1 goes.
    assert removed == ["v1"]
    assert [m["version"] for m in bundle.list_bundles(tmp_path)] == ["v2", "v3", "v4"]
    assert retention.prune_bundles(tmp_path, keep=1, pinned=[]) == []


def test_pointer_to_unpublished_bundle_is_refused(tmp_path):
    with pytest.raises(bundle.BundleError, match="no published bundle"):
        bundle.set_pointer(tmp_path, "nope")
    assert bundle.read_pointer(tmp_path) is None


def test_versions_sort_by_time():
    assert bundle.new_version(1_000_000) < bundle.new_version(2_000_000)
