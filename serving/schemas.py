"""Serving stage: request and response models of the REST API (pydantic; the OpenAPI document
is generated from these same models, so validation and documentation cannot drift apart)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, create_model

from recsys.config import ServingConfig
from recsys.sources import REGISTRY, PathName

# External ids accepted in URLs and bodies: ASCII, starting with a letter or digit (so "." and ".."
# can never be a path segment), at most 64 characters. Catalog ids outside this pattern can still
# be recommended, they just cannot be named in a request.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
FIELD_PATTERN = r"^[A-Za-z0-9_]{1,32}$"
# "field:value"; the value is any text without control characters, case-insensitive containment.
FILTER_PATTERN = r"^[A-Za-z0-9_]{1,32}:[^\x00-\x1f\x7f]{1,64}$"
# Query strings must fit gunicorn's request line (limit_request_line = 8190 bytes, every character
# possibly percent-encoded), hence fewer list entries in a query than in a JSON body.
MAX_QUERY_EXCLUDE = 20
MAX_QUERY_FILTERS = 4
MAX_BODY_ITEMS = 200
MAX_BODY_EXCLUDE = 1000
MAX_BODY_FILTERS = 16
MAX_PROFILE_CHARS = 2000

ExternalId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Filter = Annotated[str, StringConstraints(pattern=FILTER_PATTERN)]
RecommendationPath = PathName  # recsys.sources.PATHS


def _integral(value: object) -> object:
    """JSON Schema counts 35.0 as an integer; strict pydantic would not. Strings stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Query(BaseModel):
    """Query strings arrive as text: lax coercion ("10" -> 10), unknown parameters still refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestModels:
    """The request models of one app, with k bounded by its ServingConfig.max_k."""

    def __init__(self, config: ServingConfig):
        k_field = Annotated[int, Field(ge=1, le=config.max_k), BeforeValidator(_integral)]
        default_k = min(config.default_k, config.max_k)

        class UserRecommendationsQuery(_Query):
            k: k_field = default_k
            exclude: list[ExternalId] = Field(default=[], max_length=MAX_QUERY_EXCLUDE)
            filter: list[Filter] = Field(default=[], max_length=MAX_QUERY_FILTERS)
            explain: bool = False

        class SimilarQuery(_Query):
            k: k_field = default_k
            user_id: ExternalId | None = None  # only routes the request to an A/B variant

        class RecommendationRequest(_Strict):
            user_id: ExternalId | None = None  # routing and exposure log only; not looked up
            item_ids: list[ExternalId] = Field(default=[], max_length=MAX_BODY_ITEMS)
            profile_text: str | None = Field(default=None, max_length=MAX_PROFILE_CHARS)
            k: k_field = default_k
            exclude: list[ExternalId] = Field(default=[], max_length=MAX_BODY_EXCLUDE)
            filters: list[Filter] = Field(default=[], max_length=MAX_BODY_FILTERS)
            explain: bool = False

        self.user_query = UserRecommendationsQuery
        self.similar_query = SimilarQuery
        self.body = RecommendationRequest


def split_filters(filters: list[str]) -> list[tuple[str, str]]:
    """'field:value' -> (field, value); the pattern already guarantees the colon."""
    return [tuple(f.split(":", 1)) for f in filters]  # type: ignore[misc]


# ---- responses (documentation and tests; the views build plain dicts of this shape) ----


# Each source's raw score of a result (None: it did not score it), one field per registered
# source (recsys.sources.REGISTRY), in registry order.
Sources = create_model(
    "Sources",
    __base__=_Strict,
    **{s.name: (float | None, Field(description=s.description)) for s in REGISTRY},
)


class RecommendedItem(_Strict):
    item_id: str
    score: float
    sources: Sources
    because: str | None = Field(description="history item that most supports it (explain=true)")


class RecommendationResponse(_Strict):
    bundle: str
    variant: str
    user_id: str | None
    path: RecommendationPath = Field(
        description="which evidence was used; anything but 'known' is cold start"
    )
    cold_start: bool
    k: int
    items: list[RecommendedItem]
    unknown_item_ids: list[str] = Field(description="request item ids not in the catalog, ignored")


class SimilarItem(_Strict):
    item_id: str
    score: float


class SimilarResponse(_Strict):
    bundle: str
    variant: str
    item_id: str
    k: int
    items: list[SimilarItem]


class ErrorResponse(BaseModel):
    error: str = Field(description="short machine-readable code, e.g. validation_error")
    detail: str = Field(description="what was expected, what was found, where")


class HealthResponse(_Strict):
    status: Literal["ok"]


class VariantReport(_Strict):
    version: str | None
    status: Literal["loaded", "unchanged", "failed", "unavailable"]
    error: str | None


class ReadyResponse(_Strict):
    status: Literal["ready"]
    variants: dict[str, str] = Field(description="variant -> bundle version it serves")
    problems: dict[str, VariantReport] = Field(
        description="variants not serving their target: why (refused, unpublished, unset); "
        "a variant absent from `variants` is served by the control variant"
    )
    workers: dict[str, dict[str, str]] = Field(
        description="pid -> what each live worker of this server serves"
    )


class RegistryReport(_Strict):
    """What a rollback did to the MLflow registry: the champion alias follows CURRENT."""

    registered_model: str
    alias: str
    moved: bool
    version: str | None = Field(description="the registry version the alias names now, if moved")
    detail: str = Field(description="what was done, or why the alias was left alone")


class AdminResponse(_Strict):
    action: Literal["reload", "rollback"]
    variants: dict[str, VariantReport]
    rolled_back_to: str | None = None
    registry: RegistryReport | None = Field(None, description="rollback only: the MLflow alias")
    workers: int = Field(description="workers that confirmed the change before this answer")
    seconds: float = Field(description="from the call until every worker confirmed")


class BareResponse(_Strict):
    ok: bool


# ---- the live routes (serving/live_api.py) ----

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,32}$"


class LiveEvent(_Strict):
    """One user event: what a user did with an item, when (epoch seconds; default: now)."""

    user_id: ExternalId
    item_id: ExternalId
    timestamp: Annotated[int, Field(ge=0, le=253402300799), BeforeValidator(_integral)] | None = (
        Field(None, description="epoch seconds (default: when it is stored)")
    )
    type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] | None = None
    weight: float = Field(1.0, gt=0.0, le=1e6, allow_inf_nan=False)


class EventsResponse(_Strict):
    stored: int = Field(description="events stored (all of the request's, or none on an error)")
    first_seq: int
    last_seq: int


class ItemResponse(_Strict):
    item_id: str
    bundle: str = Field(description="the bundle whose item tower embedded it (PUT)")
    in_bundle: bool = Field(
        description="the served bundle already has this item: its new text is kept for the next "
        "nightly; until then the bundle's vector serves"
    )
    seq: int = Field(description="the store's change counter after this write")


class PatchResponse(_Strict):
    item_id: str
    bundle: str = Field(description="the served bundle (an overlay item: embedded again by it)")
    in_bundle: bool = Field(
        description="a bundle item: the patched columns are what filters read until the next "
        "nightly, which reads them too; its vector stays the bundle's until then"
    )
    fields: dict[str, str] = Field(description="the item's columns after the patch")
    seq: int = Field(description="the store's change counter after this write")


class HideResponse(_Strict):
    item_id: str
    hidden: bool
    seq: int
