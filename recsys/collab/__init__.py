"""Collab stage: LightFM and ALS factor models, persisted as npz + JSON (no pickle)."""

from recsys.collab.als_model import ALSModel
from recsys.collab.factors import FactorModel
from recsys.collab.lightfm_model import LightFMModel

MODELS: dict[str, type[FactorModel]] = {"lightfm": LightFMModel, "als": ALSModel}

__all__ = ["ALSModel", "FactorModel", "LightFMModel", "MODELS"]
