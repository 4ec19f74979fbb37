"""Encoder test fixtures: a tiny randomly initialised BERT built offline from tests/fixtures."""

import inspect
from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "tiny_bert"


def build_tiny_bert(directory: Path) -> Path:
    """Write a seeded random BertModel + fast tokenizer to `directory` (loadable offline)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    config = BertConfig.from_json_file(str(FIXTURE_DIR / "config.json"))
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    vocab_file = str(FIXTURE_DIR / "vocab.txt")
    if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True)
    else:  # transformers 5: `vocab` is a path or a dict
        tokenizer = BertTokenizerFast(vocab=vocab_file, do_lower_case=True)
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """Path of a tiny random BERT (hidden 32, 2 layers): `load_backbone(path)` works on it."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))
