"""Pointers and rollback: the champion stack (A -> B -> C -> D rolls back to C, B, A), refusals
that change nothing, unreadable pointers, path-like versions."""

import json
import threading

import pytest

from recsys import bundle, promotions


def _publish(workdir, version):
    with bundle.staging(workdir, version) as stage:
        (stage / "vectors.npy").write_bytes(version.encode())
        return bundle.publish(stage, workdir, version, {})


@pytest.fixture
def history(tmp_path):
    """Bundles A, B, C, D promoted in that order; CURRENT = D."""
    for version in "ABCD":
        _publish(tmp_path, version)
        bundle.set_pointer(tmp_path, version, reason="nightly gate")
    return tmp_path


def _lines(workdir):
    return (workdir / promotions.HISTORY).read_text().splitlines()


def test_rollbacks_walk_back_through_the_champions(history):
    assert [bundle.rollback(history) for _ in range(3)] == ["C", "B", "A"]
    assert bundle.read_pointer(history) == "A"
    with pytest.raises(bundle.BundleError, match="nothing to roll back to"):
        bundle.rollback(history)
    assert bundle.read_pointer(history) == "A"


def test_a_promotion_after_a_rollback_is_rolled_back_to_the_one_before_it(history):
    assert bundle.rollback(history) == "C"
    _publish(history, "E")
    bundle.set_pointer(history, "E", reason="nightly gate")
    assert [bundle.rollback(history) for _ in range(3)] == ["C", "B", "A"]


def test_rollback_to_the_current_version_changes_nothing_and_says_so(history):
    before = _lines(history)
    with pytest.raises(bundle.BundleError, match="CURRENT already names D; nothing rolled back"):
        bundle.rollback(history, "D")
    assert _lines(history) == before  # no {version: D, previous: D} record
    assert bundle.rollback(history) == "C"  # and the history still walks back


def test_rollback_to_an_older_champion_drops_the_ones_above_it(history):
    assert bundle.rollback(history, "B") == "B"
    assert bundle.rollback(history) == "A"


def test_rollback_to_a_version_off_the_stack_is_rolled_back_from_like_a_promotion(history):
    _publish(history, "X")
    assert bundle.rollback(history, "X") == "X"
    assert bundle.rollback(history) == "D"


def test_pruned_champions_are_skipped(history):
    import shutil

    shutil.rmtree(bundle.bundles_dir(history) / "C")
    assert bundle.previous_version(history) == "B"
    assert bundle.rollback(history) == "B"


def test_a_broken_previous_champion_is_refused_not_skipped(history):
    (bundle.bundles_dir(history) / "C" / "vectors.npy").write_bytes(b"damaged")
    with pytest.raises(bundle.BundleError, match="sha256 mismatch"):
        bundle.rollback(history)
    assert bundle.read_pointer(history) == "D"


def test_concurrent_rollbacks_each_take_one_step(history):
    results, errors = [], []

    def roll():
        try:
            results.append(bundle.rollback(history))
        except bundle.BundleError as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=roll) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(results) == ["B", "C"]
    assert bundle.read_pointer(history) == "B"


def test_a_history_written_before_this_format_still_walks_back(tmp_path):
    """Old records: {version, previous, reason}; A -> B -> C, then a rollback to B."""
    for version in "ABC":
        _publish(tmp_path, version)
    (tmp_path / "CURRENT").write_text("B\n")
    records = [("A", None, "nightly gate"), ("B", "A", "nightly gate"), ("C", "B", "nightly gate")]
    records.append(("B", "C", "rollback"))
    (tmp_path / promotions.HISTORY).write_text(
        "".join(
            json.dumps({"at": 0, "version": v, "previous": p, "reason": r}) + "\n"
            for v, p, r in records
        )
        + "{torn\n"  # a write cut by a crash: skipped
    )
    assert bundle.rollback(tmp_path) == "A"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"../../other/bundles/V\n"])
def test_an_unreadable_current_is_a_one_line_error_and_rollback_version_repairs_it(
    history, content
):
    (history / "CURRENT").write_bytes(content)
    for call in (bundle.read_pointer, bundle.current_bundle, bundle.rollback):
        with pytest.raises(bundle.BundleError) as info:
            call(history)
        message = str(info.value)
        assert "CURRENT" in message and "\n" not in message
        assert "recsys bundles rollback VERSION" in message
    assert bundle.rollback(history, "B") == "B"
    assert bundle.read_pointer(history) == "B"
    last = json.loads(_lines(history)[-1])
    assert last["version"] == "B" and last["previous"] is None


@pytest.mark.parametrize(
    "version", ["../../other/bundles/V", "/abs/path/V", "..", "a/b", ".hidden", "", "x" * 200]
)
def test_path_like_versions_are_refused_everywhere(history, tmp_path_factory, version):
    other = tmp_path_factory.mktemp("other")
    _publish(other, "V")
    with pytest.raises(bundle.BundleError, match="expected a bundle version"):
        bundle.rollback(history, version)
    with pytest.raises(bundle.BundleError, match="expected a bundle version"):
        bundle.set_pointer(history, version)
    with pytest.raises(bundle.BundleError, match="expected a bundle version"):
        bundle.bundle_path(history, version)
    assert bundle.read_pointer(history) == "D"


def test_version_names_the_nightly_and_tests_use_are_valid():
    for version in ("20240101T000000Z-1a2b3c4d", "v1", "A", "1.2.3+build:7", bundle.new_version()):
        assert bundle.check_version(version) == version
