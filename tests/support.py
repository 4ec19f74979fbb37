"""Shared test helpers (importable as `support`): a tiny random BERT built offline, small
generated samples, a fast pipeline config and a real bundle built through the nightly job."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from recsys.config import PipelineConfig, load_config, toml_value

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def build_tiny_bert(directory: Path) -> Path:
    """Write a seeded random BertModel (hidden 32, 2 layers) + fast tokenizer to `directory`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    config = BertConfig.from_json_file(str(FIXTURES / "tiny_bert" / "config.json"))
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    vocab_file = str(FIXTURES / "tiny_bert" / "vocab.txt")
    if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True)
    else:  # transformers 5: `vocab` is a path or a dict
        tokenizer = BertTokenizerFast(vocab=vocab_file, do_lower_case=True)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(directory)
    return Path(directory)


def one_torch_thread():
    """Fixture body (autouse in the encoder and training tests): tiny models run fastest on one
    thread, and the test machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_sample(directory: Path, seed: int = 0, n_users: int = 300, n_items: int = 400) -> Path:
    """A small generated catalog in the input contract (same generator as data/sample)."""
    from recsys.data.sample import generate_sample

    generate_sample(Path(directory), seed=seed, n_users=n_users, n_items=n_items)
    return Path(directory)


def fast_config(encoder_path: str | Path, **sections: dict) -> PipelineConfig:
    """A pipeline config that runs the whole nightly in seconds on a small sample."""
    overrides: dict = {
        "encoder": {
            "model_name_or_path": str(encoder_path),
            "dim": 32,
            "max_length": 32,
            "epochs": 2,
            "patience": 1,
            "batch_size": 64,
            "history_len": 20,
            "seq_layers": 1,
            "seq_heads": 2,
        },
        "collab": {"factors": 16, "epochs": 3, "threads": 1},
        "blend": {"weight_grid": 3, "candidates_per_source": 50},
        "eval": {"bootstrap": 200},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(None, overrides)


def dump_toml(config: PipelineConfig) -> str:
    """A config as a TOML file that load_config reads back to an equal config."""
    lines = []
    for section, values in config.model_dump(mode="json").items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(v)}" for key, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_config(path: Path, config: PipelineConfig) -> Path:
    """Write a config as TOML (for CLI subprocesses)."""
    Path(path).write_text(dump_toml(config), encoding="utf-8")
    return Path(path)


# (encoder, data bytes, sections) -> a work directory the nightly published into, in this process
_PUBLISHED: dict[str, tuple[Path, str]] = {}


def build_test_bundle(
    workdir: Path, data_dir: Path | None = None, encoder_path: str | Path | None = None, **sections
) -> str:
    """The real nightly job (no MLflow) published into `workdir`; returns the version. The first
    call with the same encoder, data bytes and config sections runs it into a template directory
    of this test process; later calls copy that template (the same inputs publish the same
    bundle, and each e2e module would otherwise pay a whole nightly for it)."""
    import atexit
    import hashlib
    import json
    import shutil
    import tempfile

    data_dir = data_dir or small_sample(Path(workdir) / "_data")
    digest = hashlib.sha256(json.dumps([str(encoder_path), sections], sort_keys=True).encode())
    for path in sorted(Path(data_dir).rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    key = digest.hexdigest()
    if key not in _PUBLISHED:
        template = Path(tempfile.mkdtemp(prefix="recsys-published-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        _PUBLISHED[key] = template, _publish(template, data_dir, encoder_path, sections)
    template, version = _PUBLISHED[key]
    shutil.copytree(template, workdir, symlinks=True, dirs_exist_ok=True)
    return version


def _publish(workdir: Path, data_dir: Path, encoder_path, sections: dict) -> str:
    from recsys.pipeline.nightly import run_nightly

    if encoder_path is None:
        encoder_path = build_tiny_bert(Path(workdir) / "_tiny_bert")
    config = fast_config(encoder_path, **sections)
    result = run_nightly(data_dir, config, workdir, say=lambda m: None, track=False, progress=False)
    if result.published is None:
        raise RuntimeError(f"nightly published nothing: {result.message}")
    return result.published


def dense_and_retrieved(ranker, k: int = 10):
    """The same queries (known and unknown users with histories of 1, 4, 12 and 30 items, each
    excluding its history and items 0 and 1) ranked by a bundle ranker's dense path and by its
    retrieval path (the text source's exact_max_items lowered): two BlendResults."""
    import numpy as np

    from recsys.ranking.base import Query

    rng = np.random.default_rng(5)
    histories = [rng.choice(ranker.n_items, size, replace=False) for size in (1, 4, 12, 30)]
    queries = [Query(u, h) for u, h in enumerate(histories)] + [Query(-1, h) for h in histories]
    exclude = [np.concatenate([q.history, [0, 1]]) for q in queries]
    text = ranker.sources["text"]
    text.exact_max_items = ranker.n_items
    assert not ranker.retrieves
    dense = ranker.recommend_detailed(queries, k, exclude)
    text.exact_max_items = 10
    assert ranker.retrieves
    return dense, ranker.recommend_detailed(queries, k, exclude)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`recsys ARGS` as a subprocess from the repository root: exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "recsys.jobs.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        timeout=timeout,
    )
