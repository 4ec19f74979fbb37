"""Tracking: recsys/'s mlflow import (lazily, never at import time; besides the pyfunc file).

Stages receive a `Tracker` and call log_params / log_metrics / log_artifact / set_tags on it; tests
and library users who do not track pass `NullTracker()`. Also the model registry: a published
bundle logged as a pyfunc model (recsys/ranking/mlflow_pyfunc.py, "Models from Code"),
registered, and its aliases moved by the nightly and by rollbacks. Where runs go and the
registered model's name derive from the work directory (see tracking_uri and
registered_model_name).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DIR_ENV = "RECSYS_MLFLOW_DIR"  # where the default sqlite store lives (default: see below)
# the pyfunc model, logged by path
MODEL_CODE = Path(__file__).parent / "ranking" / "mlflow_pyfunc.py"
MODEL_ARTIFACT = "bundle"  # the pyfunc model's artifact key: a copy of the bundle directory
CHAMPION = "champion"


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


def default_store_dir(workdir: Path | None = None) -> Path:
    """$RECSYS_MLFLOW_DIR, else <workdir>/mlflow, else ./mlflow (library use without one)."""
    chosen = os.environ.get(DEFAULT_DIR_ENV)
    if chosen:
        return Path(chosen).resolve()
    return (Path(workdir) / "mlflow" if workdir is not None else Path("mlflow")).resolve()


def tracking_uri(workdir: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else a sqlite store in default_store_dir(workdir)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir(workdir) / 'mlflow.db'}"


def registered_model_name(workdir: Path, configured: str | None = None) -> str:
    """`configured` ([nightly] registered_model) when set, else recsys-<dir name>-<8 hex of its
    absolute path>: two work directories never share a name, even in one store or server."""
    if configured:
        return configured
    path = Path(workdir).resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.name).strip("-.") or "root"
    return f"recsys-{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


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


def client(workdir: Path | None = None):
    """An MlflowClient on tracking_uri(workdir), its stores created (and migrated) under a lock."""
    import mlflow

    uri = tracking_uri(workdir)
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
    location = artifact_root(mlflow_client.tracking_uri)
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
    workdir: Path | None = None,
) -> Iterator[MlflowTracker]:
    """Open a run (nested under `parent` when given, else in the store of `workdir`, see
    tracking_uri); FINISHED on exit, FAILED on an exception."""
    mlflow_client = parent._client if parent is not None else client(workdir)
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


def log_bundle_model(
    tracker: MlflowTracker,
    model_name: str,
    bundle_version: str,
    bundle_path: Path,
    alias: str,
    reason: str,
) -> str:
    """Log a published bundle as a pyfunc model of the tracker's run (Models from Code: the
    python_model is recsys/ranking/mlflow_pyfunc.py, the bundle directory its artifact "bundle"),
    register it as a new version of `model_name`, point `alias` at it and record `reason`.

    Tags on the version name the bundle version and its location. Returns the version number."""
    import mlflow

    with (
        _fluent_store(tracker._client.tracking_uri),
        mlflow.start_run(run_id=tracker.run_id, nested=mlflow.active_run() is not None),
    ):  # MLflow marks the run FINISHED on leaving; start_run's exit sets its final status
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={MODEL_ARTIFACT: str(bundle_path)},
            signature=_signature(),
            input_example=_input_example(),  # MLflow runs it through the model: a smoke test
            pip_requirements=_requirements(),
            tags={"bundle_version": bundle_version},
        )
        tags = {"bundle_version": bundle_version, "bundle_path": str(bundle_path)}
        version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    _point_alias(tracker._client, model_name, alias, str(version.version), reason)
    return str(version.version)


@contextmanager
def _fluent_store(uri: str) -> Iterator[None]:
    """MLflow's fluent API (log_model, register_model) on `uri` for a moment, then the caller's
    URIs exactly as they were (mlflow.set_tracking_uri and set_registry_uri also rewrite
    $MLFLOW_TRACKING_URI and $MLFLOW_REGISTRY_URI)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    import mlflow

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    saved_env = {name: os.environ.get(name) for name in names}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar in job logs
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _signature():
    """Input: user_id (string), optional k (long, default the param k = 10); output: the long
    format of `recsys recommend`."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "user_id"), ColSpec("long", "k", required=False)])
    outputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("integer", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("float", "score"),
        ]
    )
    params = ParamSchema([ParamSpec("k", "long", 10)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _input_example():
    """A request as MLflow shows it (and checks it at logging): an id the bundle need not know
    takes the cold-start path, so this works for any bundle."""
    import pandas as pd

    return pd.DataFrame({"user_id": ["example-user"], "k": [3]})


def _requirements() -> list[str]:
    """The installed versions of what loads and ranks a bundle (recsys-engine's base
    dependencies, FAISS, MLflow, pandas): given, so MLflow need not load the model to infer
    them. recsys-engine itself is not on PyPI: serve with --env-manager local."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    declared = [Requirement(r) for r in requires("recsys-engine") or []]
    names = {r.name for r in declared if r.marker is None}
    names |= {"recsys-engine", "mlflow", "pandas", "pyarrow", "faiss-cpu", "faiss-gpu-cu12"}
    pinned = []
    for name in sorted(names):
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pinned


def _point_alias(mlflow_client: Any, name: str, alias: str, version: str, reason: str) -> None:
    """Move `alias` and record why and when on the version it now names."""
    mlflow_client.set_registered_model_alias(name, alias, version)
    mlflow_client.set_model_version_tag(name, version, f"{alias}_reason", reason[:5000])
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mlflow_client.set_model_version_tag(name, version, f"{alias}_since", since)


def registry_version(mlflow_client: Any, name: str, bundle_version: str) -> str | None:
    """The newest registry version of `name` registered from `bundle_version`, None if none."""
    quote = '"' if "'" in name else "'"
    found, token = [], None
    while True:
        page = mlflow_client.search_model_versions(
            f"name = {quote}{name}{quote}", max_results=200, page_token=token
        )
        found += [int(v.version) for v in page if v.tags.get("bundle_version") == bundle_version]
        token = page.token
        if not token:
            return str(max(found)) if found else None


def registry_off(workdir: Path) -> str | None:
    """Why a rollback leaves the registry alone, or None when it moves the alias: mlflow not
    installed (an API-only host), or no store (MLFLOW_TRACKING_URI unset and no default sqlite
    store: nothing was ever registered from this work directory)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        return "mlflow is not installed here (an API-only install)"
    database = sqlite_path(tracking_uri(workdir))
    if database is not None and not database.is_file():
        return f"no MLflow store at {database} (nothing registered from this work directory)"
    return None


def set_alias(
    model_name: str, alias: str, bundle_version: str, reason: str, workdir: Path | None = None
) -> str:
    """Point `alias` at the registry version of a bundle (a rollback), recording why. Raises
    LookupError when the bundle was never registered in `model_name`."""
    mlflow_client = client(workdir)
    version = registry_version(mlflow_client, model_name, bundle_version)
    if version is None:
        raise LookupError(
            f"bundle {bundle_version} has no version in registered model {model_name!r} at "
            f"{mlflow_client.tracking_uri} (it was published without tracking)"
        )
    _point_alias(mlflow_client, model_name, alias, version, reason)
    return version


def bundle_for_alias(
    model_name: str, alias: str, workdir: Path | None = None
) -> tuple[str, str] | None:
    """(bundle_version, bundle_path) behind a registered-model alias, or None when unset."""
    import mlflow.exceptions

    try:
        version = client(workdir).get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return version.tags.get("bundle_version", ""), version.tags.get("bundle_path", "")
