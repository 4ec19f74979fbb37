"""Bundle arrays memory-mapped (recsys.bundle_arrays): .npz members mapped at their offsets in the
archive read back equal to np.load's, read-only; RECSYS_BUNDLE_MMAP=0 reads private copies."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.bundle_arrays import MMAP_ENV, is_mapped, load_npy, load_npz

ARRAYS = {
    "vectors": np.arange(6000, dtype=np.float32).reshape(1000, 6) / 7,  # (n, dim)
    "ids": np.arange(-3, 997, dtype=np.int64),
    "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    "flags": np.array([True, False, True]),
    "names": np.array(["text", "popularity"]),  # '<U10', as topk.npz stores source names
    "empty": np.zeros((0, 4), dtype=np.float32),
    "scalar": np.asarray(3.5, dtype=np.float32),
}


def test_stored_members_are_mapped_and_equal_to_np_load(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, **ARRAYS)
    loaded = load_npz(path)
    assert sorted(loaded) == sorted(ARRAYS)
    for name, expected in ARRAYS.items():
        assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape
        assert np.array_equal(loaded[name], expected), name
        assert is_mapped(loaded[name]) == (expected.size > 0), name  # nothing to map when empty
    assert loaded["fortran"].flags.f_contiguous
    with pytest.raises(ValueError, match="read-only"):
        loaded["vectors"][0, 0] = 1.0  # a bundle is never written through a map


def test_compressed_members_are_read_not_mapped(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **ARRAYS)
    loaded = load_npz(path)
    assert all(np.array_equal(loaded[n], a) for n, a in ARRAYS.items())
    assert not any(is_mapped(a) for a in loaded.values())


def test_mapping_off_reads_private_copies(tmp_path, monkeypatch):
    np.savez(tmp_path / "a.npz", **ARRAYS)
    np.save(tmp_path / "v.npy", ARRAYS["vectors"])
    assert is_mapped(load_npy(tmp_path / "v.npy"))
    monkeypatch.setenv(MMAP_ENV, "0")
    assert not is_mapped(load_npy(tmp_path / "v.npy"))
    assert not any(is_mapped(a) for a in load_npz(tmp_path / "a.npz").values())
    monkeypatch.setenv(MMAP_ENV, "maybe")
    with pytest.raises(ValueError, match=f"{MMAP_ENV}: expected 1/0"):
        load_npy(tmp_path / "v.npy")


def test_object_members_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", ragged=np.array([[1], [2, 3]], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        load_npz(tmp_path / "o.npz")
