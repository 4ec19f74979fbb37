"""Ranking stage, MLflow side: a published bundle as an MLflow pyfunc model (Models from Code).

MLflow loads this file by path: recsys.tracking.log_bundle_model logs it as `python_model`, with
a copy of the bundle directory as the artifact "bundle". load_context loads that copy (every
file's sha256 checked); predict takes a frame of user_id (and optional k) and returns top-k in
the long format of `recsys recommend` (user_id, rank, item_id, score), from the same
RecommenderModel.rank_users. No pickle; nothing of training is imported. The set_model call
at the end is MLflow's Models-from-Code contract: nothing in recsys imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

import mlflow

DEFAULT_K = 10  # as `recsys recommend`
COLUMNS = ["user_id", "rank", "item_id", "score"]


class BundleModel(PythonModel):
    """Top-k recommendations of one published bundle."""

    def load_context(self, context: Any) -> None:
        from recsys.ranking.model import RecommenderModel

        self.model = RecommenderModel.load(Path(context.artifacts["bundle"]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """One block of up to k rows per input row, in input order; unknown users take the
        cold-start path, as in `recsys recommend`. Bad input: MlflowException (HTTP 400)."""
        default_k = _k_value((params or {}).get("k", DEFAULT_K), "params k")
        requests = _requests(model_input, default_k, len(self.model.item_map))
        parts = []
        for k, group in requests.groupby("k", sort=True):
            users = list(dict.fromkeys(group["user_id"]))  # each (user, k) ranked once
            frame = self.model.rank_users(users, int(k)).to_pandas()
            parts.append(frame.assign(k=int(k)))
        if not parts:
            return _empty()
        ranked = pd.concat(parts, ignore_index=True)
        out = requests.merge(ranked, on=["user_id", "k"], how="inner")
        out = out.sort_values(["position", "rank"], kind="stable")
        return out[COLUMNS].reset_index(drop=True).astype({"rank": "int32", "score": "float32"})


def _requests(frame: Any, default_k: int, n_items: int) -> pd.DataFrame:
    """(position, user_id, k) per input row; k from the row, else `default_k`, in 1..n_items."""
    if not isinstance(frame, pd.DataFrame) or "user_id" not in frame.columns:
        found = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        _bad(f"expected a DataFrame with a 'user_id' column (and optional 'k'), found {found}")
    if frame["user_id"].isna().any():
        rows = frame.index[frame["user_id"].isna()].tolist()[:5]
        _bad(f"user_id: expected a string in every row, found nulls in rows {rows}")
    ks = frame["k"] if "k" in frame.columns else pd.Series(default_k, index=frame.index)
    ks = [default_k if pd.isna(k) else _k_value(k, f"k of row {i}") for i, k in ks.items()]
    too_big = [k for k in ks if k > n_items]
    if too_big:
        _bad(f"k: expected at most the bundle's {n_items} items, found {max(too_big)}")
    return pd.DataFrame(
        {
            "position": range(len(frame)),
            "user_id": frame["user_id"].astype(str).to_list(),
            "k": ks,
        }
    )


def _k_value(value: Any, where: str) -> int:
    try:
        whole = not isinstance(value, bool) and float(value).is_integer() and int(value) >= 1
    except (TypeError, ValueError):
        whole = False
    if not whole:
        _bad(f"{where}: expected a whole number >= 1, found {value!r}")
    return int(value)


def _bad(message: str) -> None:
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype="object"),
            "rank": pd.Series(dtype="int32"),
            "item_id": pd.Series(dtype="object"),
            "score": pd.Series(dtype="float32"),
        }
    )


mlflow.models.set_model(BundleModel())
