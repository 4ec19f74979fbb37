"""Encoder test fixtures: one torch thread (the tiny BERT: `tiny_bert_dir`, tests/conftest.py)."""

import pytest
from support import one_torch_thread

_one_torch_thread = pytest.fixture(autouse=True)(one_torch_thread)
