"""Training test fixtures: one torch thread (the tiny BERT: `tiny_bert_dir`, tests/conftest.py) and
the encoder tests' known-answer world (encoder_world.py)."""

import pytest
from encoder_world import make_world
from support import one_torch_thread

_one_torch_thread = pytest.fixture(autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def world():
    """(Dataset, Split) of encoder_world, built once per test module."""
    return make_world()
