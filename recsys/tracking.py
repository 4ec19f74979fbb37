"""Tracking: the only module in recsys/ that imports mlflow (lazily, never at import time).

Stages receive a `Tracker` and call log_params / log_metrics / log_artifact / set_tags on it; tests
and library users who do not track pass `NullTracker()`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DIR_ENV = "RECSYS_MLFLOW_DIR"  # where the default sqlite store lives, default ./mlflow


class Tracker(Protocol):
    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class NullTracker:
    """Records nothing; keeps the last values so callers and tests can look at them."""

    run_id: str | None = None

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.tags: dict[str, Any] = {}
        self.artifacts: list[str] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update(tags)


def default_store_dir() -> Path:
    return Path(os.environ.get(DEFAULT_DIR_ENV, "mlflow")).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else a sqlite store under ./mlflow (or $RECSYS_MLFLOW_DIR)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class MlflowTracker:
    """A Tracker writing to one MLflow run."""

    def __init__(self, client: Any, run_id: str):
        self._client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow.entities

        flat = _flat(params)
        batch = [mlflow.entities.Param(k, v) for k, v in flat.items()]
        for start in range(0, len(batch), 100):
            self._client.log_batch(self.run_id, params=batch[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self._client.log_metric(self.run_id, key, float(value), step=step or 0)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, str(value))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative paths from the working directory), None
    for any other store or an in-memory database."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


def artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a sqlite database (<its dir>/artifacts),
    never MLflow's ./mlruns under whatever directory a job was started from; None (the server
    decides) for other stores."""
    database = sqlite_path(uri)
    return (database.parent / "artifacts").as_uri() if database is not None else None


@contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Exclusive across processes while a sqlite store may be created: MLflow runs its alembic
    migrations on first use without a lock, and two jobs doing it at once crash one of them."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init-lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def client():
    """An MlflowClient on tracking_uri(), its stores created (and migrated) under a lock."""
    import mlflow

    uri = tracking_uri()
    with _first_use_lock(uri):
        mlflow_client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        mlflow_client.search_experiments(max_results=1)  # the tracking store: tables, migrations
        mlflow_client.search_registered_models(max_results=1)  # the registry store: the same
    return mlflow_client


def experiment_id(mlflow_client: Any, name: str) -> str:
    """Get or create an experiment (artifacts beside a sqlite store, see artifact_root); a
    concurrent job creating it first is not an error."""
    import mlflow.exceptions

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = artifact_root(tracking_uri())
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        found = mlflow_client.get_experiment_by_name(name)  # created meanwhile by another job
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def start_run(
    experiment: str,
    run_name: str,
    parent: MlflowTracker | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[MlflowTracker]:
    """Open a run (nested under `parent` when given); FINISHED on exit, FAILED on an exception."""
    mlflow_client = parent._client if parent is not None else client()
    run_tags = dict(tags or {})
    if parent is not None:
        run_tags["mlflow.parentRunId"] = parent.run_id
    run = mlflow_client.create_run(
        experiment_id(mlflow_client, experiment),
        run_name=run_name,
        tags={k: str(v) for k, v in run_tags.items()},
    )
    tracker = MlflowTracker(mlflow_client, run.info.run_id)
    try:
        yield tracker
    except BaseException:
        mlflow_client.set_terminated(tracker.run_id, status="FAILED")
        raise
    mlflow_client.set_terminated(tracker.run_id, status="FINISHED")


def register_bundle(
    tracker: MlflowTracker, model_name: str, bundle_version: str, bundle_path: Path, alias: str
) -> str:
    """Register a published bundle as a version of `model_name` and point `alias` at it.

    The run must already hold the bundle's manifest under the artifact path "bundle"; the model
    version's source is that run artifact, and tags name the bundle version and its location.
    Returns the registry version number.
    """
    import mlflow.exceptions

    mlflow_client = tracker._client
    try:
        mlflow_client.create_registered_model(model_name)
    except mlflow.exceptions.MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    version = mlflow_client.create_model_version(
        model_name,
        source=f"runs:/{tracker.run_id}/bundle",
        run_id=tracker.run_id,
        tags={"bundle_version": bundle_version, "bundle_path": str(bundle_path)},
    )
    mlflow_client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version)


def bundle_for_alias(model_name: str, alias: str) -> tuple[str, str] | None:
    """(bundle_version, bundle_path) behind a registered-model alias, or None when unset."""
    import mlflow.exceptions

    try:
        version = client().get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return version.tags.get("bundle_version", ""), version.tags.get("bundle_path", "")
