"""Data stage: load + validate raw data into a Dataset, split it, describe it."""

from recsys.data.dataset import Dataset
from recsys.data.errors import DataValidationError
from recsys.data.loaders import load_dataset

__all__ = ["DataValidationError", "Dataset", "load_dataset"]
