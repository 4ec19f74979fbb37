"""Serving stage: what serving holds per A/B variant — the ServedModel protocol (reads nothing).

recsys.ranking.model.RecommenderModel implements it; the API, the OpenAPI document and the holder
use nothing else of a loaded model, so any object with this shape can be served (tests do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ServedModel(Protocol):
    version: str  # the bundle version
    filter_fields: list[str]  # item columns a request may filter on

    def has_item(self, item_id: str) -> bool: ...

    def recommend(
        self,
        *,
        user_id: str | None = None,
        item_ids: Sequence[str] = (),
        profile_text: str | None = None,
        k: int = 10,
        exclude: Sequence[str] = (),
        filters: Sequence[tuple[str, str]] = (),
        explain: bool = False,
    ) -> dict[str, Any]:
        """{"path", "items": [{"item_id", "score", "sources", "because"?}], "unknown_item_ids"};
        raises recsys.errors.RequestError for a request the model cannot answer as asked."""
        ...

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]: ...
