"""Encoder test fixtures: a tiny randomly initialised BERT built offline (tests/fixtures)."""

import pytest
from support import build_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """Path of a tiny random BERT (hidden 32, 2 layers): `load_backbone(path)` works on it."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
