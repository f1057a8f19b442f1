"""Request and response bodies of the serving API (pydantic); validation errors are 422s that
name the field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from guim.data.schema import EVENT_TYPES, event_code

MAX_TIMESTAMP = 2**53  # seconds; anything larger is not a time


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _event_name(value: str) -> str:
    if event_code(value) is None:
        names = ", ".join(EVENT_TYPES[1:])
        raise ValueError(f"unknown event {value!r}; expected one of {names} (or an alias)")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_utf8)]
EventName = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_event_name)
]
Timestamp = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP, description="Unix seconds.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    user_id: Id
    item_id: Id
    event: EventName = "interaction"
    timestamp: Timestamp | None = Field(None, description="Unix seconds; default: now.")
    event_id: Id | None = Field(None, description="Client id; a repeated id is not stored twice.")


class EventsIn(Strict):
    events: list[EventIn] = Field(min_length=1)


class EventsOut(BaseModel):
    stored: int
    duplicates: int
    unknown_items: int = Field(description="Events of items the model does not know (stored).")


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendationsOut(BaseModel):
    user_id: str | None = None
    items: list[ScoredItem]
    fallback: Literal["popularity"] | None = None
    model_version: str
    history_length: int


class HistoryEvent(Strict):
    item_id: Id
    event: EventName = "interaction"
    timestamp: Timestamp | None = None


class RecommendIn(Strict):
    history: list[HistoryEvent] = Field(description="Oldest first.")
    k: int = Field(10, ge=1)
    exclude_seen: bool = True


class EmbeddingOut(BaseModel):
    user_id: str
    vectors: list[list[float]] = Field(description="K interest vectors of dimension D.")
    model_version: str
    history_length: int


class SimilarOut(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: str


class ItemIn(Strict):
    item_id: Id
    title: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_utf8)] | None = None
    attributes: list[Annotated[str, StringConstraints(max_length=512), AfterValidator(_utf8)]] = (
        Field(default_factory=list, description='"field=value" strings, e.g. "brand=Acme".')
    )


class ItemOut(BaseModel):
    item_id: str
    created: bool
    unknown_attributes: list[str]
    model_version: str


class ModelIn(Strict):
    source: Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_utf8)]


class CandidateOut(BaseModel):
    id: int
    source: str
    status: Literal["evaluating", "swapped", "refused", "failed"]
    live_metric: float | None = None
    candidate_metric: float | None = None
    metric: str = "NDCG@10"
    gate_cases: int | None = None
    gate_set: str | None = None
    reason: str | None = None


class ModelsOut(BaseModel):
    live: dict
    candidates: list[CandidateOut]
    tolerance: float


class Health(BaseModel):
    status: str
    model_version: str | None = None
    store: str | None = None
    pid: int | None = Field(None, description="The worker process that answered.")
