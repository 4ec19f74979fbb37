"""Bundle verification holds regular files only: symlinks (to files or directories, inside or
outside), FIFOs, stray directories and manifest paths leaving the bundle are refused."""

import json
import os

import pytest

from recsys import bundle


@pytest.fixture
def published(tmp_path):
    with bundle.staging(tmp_path, "v1") as stage:
        (stage / "vectors.npy").write_bytes(b"vectors")
        (stage / "ranker").mkdir()
        (stage / "ranker" / "weights.json").write_text("{}")
        return bundle.publish(stage, tmp_path, "v1", {})


def _outside(tmp_path):
    target = tmp_path / "outside.bin"
    target.write_bytes(b"secret")
    return target


@pytest.mark.parametrize(
    "damage, found",
    [
        (lambda p, t: os.symlink("/etc", p / "evil"), "'evil' is a symlink"),
        (lambda p, t: os.symlink("..", p / "ranker" / "up"), "'ranker/up' is a symlink"),
        (lambda p, t: os.symlink(_outside(t), p / "extra.bin"), "'extra.bin' is a symlink"),
        (lambda p, t: os.mkfifo(p / "pipe"), "'pipe' is a FIFO"),
        (lambda p, t: (p / "empty").mkdir(), "directories not in the manifest: ['empty']"),
    ],
)
def test_anything_but_regular_files_is_refused(published, tmp_path, damage, found):
    damage(published, tmp_path)
    with pytest.raises(bundle.BundleError, match="a bundle holds regular files only|directories"):
        bundle.verify(published)
    with pytest.raises(bundle.BundleError) as info:
        bundle.verify(published)
    assert found in str(info.value)


def test_a_listed_file_swapped_for_a_symlink_is_refused(published, tmp_path):
    """Same name, same content behind the link: refused (nothing is read through a link)."""
    victim = published / "vectors.npy"
    copy = tmp_path / "copy.npy"
    copy.write_bytes(victim.read_bytes())
    victim.unlink()
    os.symlink(copy, victim)
    with pytest.raises(bundle.BundleError, match="'vectors.npy' is a symlink"):
        bundle.verify(published)


def test_a_fifo_manifest_is_refused_without_blocking(published):
    (published / bundle.MANIFEST).unlink()
    os.mkfifo(published / bundle.MANIFEST)
    with pytest.raises(bundle.BundleError, match="'manifest.json' is a FIFO"):
        bundle.verify(published)


def test_a_symlinked_bundle_directory_is_refused(published, tmp_path):
    os.symlink(published, bundle.bundles_dir(tmp_path) / "v2")
    with pytest.raises(bundle.BundleError, match="is a symlink"):
        bundle.verify(bundle.bundles_dir(tmp_path) / "v2")


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "ranker/../../x", "./a"])
def test_manifest_paths_leaving_the_bundle_are_refused(published, name):
    path = published / bundle.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"][name] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match="'files' must map relative paths"):
        bundle.verify(published)


def test_an_intact_bundle_with_subdirectories_verifies(published):
    assert set(bundle.verify(published)["files"]) == {"vectors.npy", "ranker/weights.json"}
