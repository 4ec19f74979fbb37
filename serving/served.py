"""Serving stage: what serving holds per A/B variant — the ServedModel protocol (reads nothing).

recsys.ranking.model.RecommenderModel implements it; the API, the OpenAPI document and the holder
use nothing else of a loaded model, so any object of this shape can be served.
"""

from __future__ import annotations

from typing import Any, Protocol


class ServedModel(Protocol):
    version: str  # the bundle version
    filter_fields: list[str]  # item columns a request may filter on

    def has_item(self, item_id: str) -> bool: ...

    def recommend(self, **request: Any) -> dict[str, Any]:
        """Top-k for one request (keywords user_id, item_ids, profile_text, k, exclude, filters,
        explain: RecommenderModel.recommend's): {"path", "items": [{"item_id", "score",
        "sources", "because"?}], "unknown_item_ids"}. Raises recsys.errors.RequestError for a
        request the model cannot answer as asked."""
        ...

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]: ...
