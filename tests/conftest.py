"""Shared test set-up: offline, few threads, temp work and MLflow directories per test."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Every test gets its own work directory and MLflow store; nothing leaks into the repo."""
    monkeypatch.setenv("RECSYS_WORKDIR", str(tmp_path / "var"))
    monkeypatch.setenv("RECSYS_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """Path of a tiny random BERT (hidden 32, 2 layers): `load_backbone(path)` works on it."""
    from support import build_tiny_bert

    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (2 CPUs, as CI has): starting Ray takes
    seconds, so every test of the Ray backend shares it. recsys.compute keeps an initialised Ray."""
    import ray  # the `ray` extra: make test installs it (never skipped)

    ray.init(num_cpus=2, logging_level="WARNING", log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """redis://127.0.0.1:PORT/0 of a real redis-server (Debian's `redis-server`, which
    tests/system_deps.sh installs for `make test`) started for the session on a free port, with
    an append-only file in a temporary directory; killed at the end. Skipped, saying why, when
    the binary is absent (PyPI's `redis-server` wheels stop at Python 3.9)."""
    from redis_server import start_redis

    with start_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url
