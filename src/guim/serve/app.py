"""The serving API: `create_app(settings)` builds a FastAPI app whose lifespan loads the model,
its FAISS index and the event store. Events posted to it are stored before the 2xx, and the next
recommendation of that user embeds the stored history through `guim.embed` (read-your-writes).

A candidate model posted to /admin/models is evaluated in a background thread on a gate set and
swapped in by one reference assignment only if it is not worse than the live model beyond the
tolerance; a request keeps the model it started with. The swap reaches the other worker
processes of the server through the model pointer (`guim.serve.pointer`).
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from guim.data.schema import event_code
from guim.index import IndexConfig
from guim.serve.batching import UserBatcher
from guim.serve.model import History, Recommendation, ServedModel, load_model
from guim.serve.pointer import Pointer, PointerWatcher, default_path, read_pointer, write_pointer
from guim.serve.schemas import (
    CandidateOut,
    EmbeddingOut,
    EventsIn,
    EventsOut,
    Health,
    ItemIn,
    ItemOut,
    ModelIn,
    ModelsOut,
    RecommendationsOut,
    RecommendIn,
    ScoredItem,
    SimilarOut,
)
from guim.serve.settings import ServeSettings
from guim.serve.store import EventStore, StoredEvent, open_store

T = TypeVar("T")
log = logging.getLogger("guim.serve")


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a test)."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "guim_requests", "HTTP requests.", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "guim_request_seconds",
            "Request latency.",
            ["route"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.model = Info("guim_model", "The live model.", registry=self.registry)
        Gauge("guim_store_events", "Events in the store.", registry=self.registry).set_function(
            lambda: service.store.count()
        )
        Gauge(
            "guim_store_unknown_item_events",
            "Stored events of items the model does not know.",
            registry=self.registry,
        ).set_function(lambda: service.store.unknown_count())
        Gauge("guim_swaps", "Model swaps so far.", registry=self.registry).set_function(
            lambda: sum(c.status == "swapped" for c in service.candidates)
        )


@dataclass
class Service:
    """What the routes share: settings, the store, the live model, candidates and metrics."""

    settings: ServeSettings
    store: EventStore
    model: ServedModel
    candidates: list[CandidateOut] = field(default_factory=list)
    admin_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: Metrics | None = None
    batcher: UserBatcher | None = None
    index: IndexConfig | None = None  # search parameters of every model this service loads
    pointer: Path | None = None  # the model pointer shared with the other workers
    live_token: str | None = None  # the pointer token of the live model
    swap_lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, source: str | Path) -> ServedModel:
        """A model fully built (index, item side table) before anyone can serve it."""
        model = load_model(source, self.index, self.settings.backend)
        self.sync_items(model)
        return model

    def swap(self, model: ServedModel, record: CandidateOut) -> None:
        """Make a candidate that passed the gate live here and, through the pointer, in every
        worker (written first: a swap that cannot reach them does not happen here either)."""
        pointer = Pointer(
            source=str(model.source), version=model.version, candidate=record.model_dump()
        )
        with self.swap_lock:
            if self.pointer is not None:
                write_pointer(self.pointer, pointer)
            self._install(model, pointer.token)

    def adopt(self, pointer: Pointer) -> None:
        """Serve the model another worker swapped in (called by the pointer watcher)."""
        with self.swap_lock:
            if pointer.token == self.live_token:
                return
        model = self.load(pointer.source)
        with self.swap_lock:
            latest = read_pointer(self.pointer) if self.pointer is not None else pointer
            if latest is None or latest.token != pointer.token:
                return  # superseded while loading: the watcher hands over the newer one
            self._install(model, pointer.token)
        self.record_adopted(pointer)

    def record_adopted(self, pointer: Pointer) -> None:
        """List another worker's swap among this worker's candidates."""
        if pointer.candidate is None:
            return
        with self.admin_lock:
            self.candidates.append(
                CandidateOut(
                    **{
                        **pointer.candidate,
                        "id": len(self.candidates) + 1,
                        "reason": f"swapped in by worker {pointer.pid}",
                    }
                )
            )

    def _install(self, model: ServedModel, token: str) -> None:
        """The swap itself, with swap_lock held: one reference assignment."""
        self.model = model
        self.live_token = token
        gc.freeze()  # as at start-up: the new model's objects leave the collector's passes
        if self.metrics is not None:
            self.metrics.model.info({"version": model.version})

    def embed(self, model: ServedModel, history: History) -> np.ndarray:
        """(K, D) vectors of one history: micro-batched with concurrent requests when enabled."""
        if self.batcher is not None:
            return self.batcher.embed(model, history)
        return model.user_vectors([history])[0]

    async def embed_async(self, model: ServedModel, history: History) -> np.ndarray:
        """`embed` from the event loop, which waits without blocking."""
        if self.batcher is not None:
            return await self.batcher.embed_async(model, history)
        return await run_in_threadpool(lambda: model.user_vectors([history])[0])

    async def off_loop(self, fn: Callable[..., T], *args) -> T:
        """Run a store-reading call: on the loop for SQLite (local reads take microseconds and
        a hop to the thread pool costs more), in the thread pool for a networked store."""
        if self.store.local:
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    def sync_items(self, model: ServedModel) -> None:
        """Load run-time items other replicas (or an earlier process) added to the store."""
        done = getattr(model, "synced_items", 0)
        if self.store.n_items() <= done:
            return
        with model._extras_lock:
            done = getattr(model, "synced_items", 0)
            records = self.store.items(done)
            model.synced_items = done + len(records)
        for r in records:
            if not model.knows(r["item_id"]):
                vec, _ = model.embed_cold_item(r.get("attributes", []), r.get("title"))
                model.add_items([r["item_id"]], vec[None])

    def history(self, model: ServedModel, user_id: str) -> tuple[History, set[int], set[str], int]:
        """The user's history (export + store) as model item_idx lists, plus what to exclude:
        item_idx seen, run-time items seen, and the number of events read."""
        items, events, times = model.base_history(user_id)
        seen_extra: set[str] = set()
        stored = self.store.history(user_id, self.settings.max_history)
        for item_id, ev, ts in stored:
            idx = model.item_idx.get(item_id)
            if idx is not None:
                items.append(idx)
                events.append(ev)
                times.append(ts)
            elif model.knows(item_id):
                seen_extra.add(item_id)
        return (items, events, times), set(items), seen_extra, len(items) + len(seen_extra)


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
router = APIRouter()


def _check_k(k: int, settings: ServeSettings) -> None:
    if k > settings.max_k:
        raise HTTPException(
            422,
            [{"loc": ["k"], "msg": f"k must be at most {settings.max_k}", "type": "too_large"}],
        )


async def _recommend(
    svc: Service,
    model: ServedModel,
    history: History,
    seen: set[int],
    seen_extra: set[str],
    k: int,
    exclude_seen: bool,
) -> tuple[Recommendation, str | None]:
    await svc.off_loop(svc.sync_items, model)
    exclude_idx = seen if exclude_seen else set()
    exclude_extra = seen_extra if exclude_seen else set()
    if not history[0]:
        rec = model.popular_items(k, exclude_idx)
        fallback: str | None = "popularity"
    else:
        users = await svc.embed_async(model, history)  # (K, D)
        rec = model.retrieve(users, k, exclude_idx, exclude_extra)
        fallback = None
    return rec, fallback


def _recommendations_json(
    user_id: str | None, rec: Recommendation, fallback: str | None, version: str, n: int
) -> Response:
    """A `RecommendationsOut` body written straight to JSON: the hottest route skips building
    and re-validating pydantic objects (the schema test checks every answer against it)."""
    body = {
        "user_id": user_id,
        "items": [
            {"item_id": i, "score": s} for i, s in zip(rec.item_ids, rec.scores, strict=True)
        ],
        "fallback": fallback,
        "model_version": version,
        "history_length": n,
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.post("/events", response_model=EventsOut, tags=["events"])
def post_events(body: EventsIn, svc: ServiceDep) -> EventsOut:
    """Store a batch of events durably (before answering); unknown items are stored and counted."""
    if len(body.events) > svc.settings.max_batch:
        raise HTTPException(
            413, f"a batch of {len(body.events)} events exceeds the cap of {svc.settings.max_batch}"
        )
    model = svc.model
    now = int(time.time())
    events = [
        StoredEvent(
            user_id=e.user_id,
            item_id=e.item_id,
            event=event_code(e.event) or 1,
            timestamp=now if e.timestamp is None else e.timestamp,
            known=model.knows(e.item_id),
            event_id=e.event_id,
        )
        for e in body.events
    ]
    res = svc.store.append(events)
    return EventsOut(stored=res.stored, duplicates=res.duplicates, unknown_items=res.unknown_items)


@router.get(
    "/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["recommend"]
)
async def user_recommendations(
    user_id: str,
    svc: ServiceDep,
    k: Annotated[int, Query(ge=1)] = 10,
    exclude_seen: bool = True,
) -> Response:
    """Top-k items for a user from the latest stored history (popularity when there is none)."""
    _check_k(k, svc.settings)
    model = svc.model  # this request finishes on this model, whatever is swapped meanwhile
    history, seen, seen_extra, n = await svc.off_loop(svc.history, model, user_id)
    rec, fallback = await _recommend(svc, model, history, seen, seen_extra, k, exclude_seen)
    return _recommendations_json(user_id, rec, fallback, model.version, n)


@router.post("/recommend", response_model=RecommendationsOut, tags=["recommend"])
async def recommend_history(body: RecommendIn, svc: ServiceDep) -> Response:
    """Top-k items for an explicit history (an anonymous session), oldest event first."""
    _check_k(body.k, svc.settings)
    if len(body.history) > svc.settings.max_history:
        raise HTTPException(
            413,
            f"a history of {len(body.history)} events exceeds the cap of "
            f"{svc.settings.max_history}",
        )
    model = svc.model
    items, events, times, seen_extra = [], [], [], set()
    for j, e in enumerate(body.history):
        idx = model.item_idx.get(e.item_id)
        if idx is not None:
            items.append(idx)
            events.append(event_code(e.event) or 1)
            times.append(j if e.timestamp is None else e.timestamp)
        elif model.knows(e.item_id):
            seen_extra.add(e.item_id)
    rec, fallback = await _recommend(
        svc, model, (items, events, times), set(items), seen_extra, body.k, body.exclude_seen
    )
    return _recommendations_json(None, rec, fallback, model.version, len(items) + len(seen_extra))


@router.get("/users/{user_id}/embedding", response_model=EmbeddingOut, tags=["embed"])
async def user_embedding(user_id: str, svc: ServiceDep) -> EmbeddingOut:
    """The user's K interest vectors from the latest stored history."""
    model = svc.model
    history, _, _, n = await svc.off_loop(svc.history, model, user_id)
    if not history[0]:
        raise HTTPException(404, f"user {user_id!r} has no history the model can embed")
    vectors = await svc.embed_async(model, history)
    return EmbeddingOut(
        user_id=user_id,
        vectors=np.nan_to_num(vectors).tolist(),
        model_version=model.version,
        history_length=n,
    )


@router.get("/items/{item_id}/similar", response_model=SimilarOut, tags=["items"])
def similar_items(item_id: str, svc: ServiceDep, k: Annotated[int, Query(ge=1)] = 10) -> SimilarOut:
    """Items nearest to an item (inner product of item vectors), the item itself left out."""
    _check_k(k, svc.settings)
    model = svc.model
    svc.sync_items(model)
    vec = model.item_vector(item_id)
    if vec is None:
        raise HTTPException(404, f"unknown item id {item_id!r}")
    exclude = {model.item_idx[item_id]} if item_id in model.item_idx else set()
    rec = model.retrieve(vec[None].astype(np.float32), k, exclude, {item_id})
    return SimilarOut(
        item_id=item_id,
        items=[
            ScoredItem(item_id=i, score=s) for i, s in zip(rec.item_ids, rec.scores, strict=True)
        ],
        model_version=model.version,
    )


@router.post("/items", response_model=ItemOut, status_code=201, tags=["items"])
def add_item(body: ItemIn, svc: ServiceDep, response: Response) -> ItemOut:
    """A new item embedded cold from its attributes and title; searchable at once."""
    if len(body.attributes) > svc.settings.max_attributes:
        raise HTTPException(413, f"more than {svc.settings.max_attributes} attributes")
    model = svc.model
    svc.sync_items(model)
    if model.knows(body.item_id):
        response.status_code = 200
        return ItemOut(
            item_id=body.item_id, created=False, unknown_attributes=[], model_version=model.version
        )
    vec, unknown = model.embed_cold_item(body.attributes, body.title)
    created = svc.store.add_item(body.item_id, body.model_dump())
    model.add_items([body.item_id], vec[None])
    if not created:
        response.status_code = 200
    return ItemOut(
        item_id=body.item_id,
        created=created,
        unknown_attributes=unknown,
        model_version=model.version,
    )


@router.get("/health", response_model=Health, tags=["ops"])
def health() -> Health:
    """The process is up."""
    return Health(status="ok", pid=os.getpid())


@router.get("/ready", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
def ready(svc: ServiceDep, response: Response) -> Health:
    """The model is loaded and the store answers."""
    try:
        svc.store.count()
    except Exception:
        response.status_code = 503
        return Health(status="store unavailable", model_version=svc.model.version, pid=os.getpid())
    return Health(
        status="ready", model_version=svc.model.version, store=svc.store.url, pid=os.getpid()
    )


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(svc: ServiceDep) -> Response:
    """Prometheus text: request counts and latency per route, model version, store size."""
    assert svc.metrics is not None
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# -- admin: gated model swaps -------------------------------------------------------------------


def require_admin(svc: ServiceDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = svc.settings.admin_token
    if not token:
        raise HTTPException(
            403,
            "admin routes are disabled: start guim serve with --admin-token (or "
            "GUIM_SERVE_ADMIN_TOKEN)",
        )
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(authorization[7:].strip().encode(), token.encode()):
        raise HTTPException(403, "wrong token")


Admin = Depends(require_admin)


@router.post(
    "/admin/models",
    response_model=CandidateOut,
    status_code=202,
    tags=["admin"],
    dependencies=[Admin],
)
def post_model(body: ModelIn, svc: ServiceDep) -> CandidateOut:
    """Evaluate a candidate (export or run directory) in the background; swap it in if the gate
    metric is not worse than the live model's by more than the tolerance."""
    path = Path(body.source)
    if not ((path / "manifest.json").exists() or (path / "model.safetensors").exists()):
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "source"],
                    "msg": f"{body.source} is not an export or run directory",
                    "type": "value_error",
                }
            ],
        )
    with svc.admin_lock:
        cand = CandidateOut(id=len(svc.candidates) + 1, source=str(path), status="evaluating")
        svc.candidates.append(cand)
    threading.Thread(target=_evaluate_candidate, args=(svc, cand.id), daemon=True).start()
    return cand


@router.get("/admin/models", response_model=ModelsOut, tags=["admin"], dependencies=[Admin])
def list_models(svc: ServiceDep) -> ModelsOut:
    """The live model and every candidate: evaluating, swapped, refused (with both figures)."""
    return ModelsOut(
        live=svc.model.describe(),
        candidates=list(svc.candidates),
        tolerance=svc.settings.gate_tolerance,
    )


def gate_cases(svc: Service, model: ServedModel) -> tuple[list[tuple[History, int]], str]:
    """The store's most recent held-out events (each recent user's last event, after the rest
    of the history), or, when the store has too few, the export's validation split (each
    user's second-to-last interaction)."""
    s = svc.settings
    cases = []
    for user in svc.store.recent_users(s.gate_cases):
        (items, events, times), _, _, _ = svc.history(model, user)
        if len(items) >= 2:
            cases.append(((items[:-1], events[:-1], times[:-1]), items[-1]))
    if len(cases) >= s.gate_min_cases or model.base is None:
        return cases, "store"
    base = model.base
    rows = np.flatnonzero(base.lengths >= 3)
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), s.gate_cases)).astype(int)]
    cases = []
    for r in rows.tolist():
        a, b = base.offsets[r], base.offsets[r + 1] - 1  # drop the test event
        items = base.item_idx[a:b].tolist()
        cases.append(
            (
                (items[:-1], base.event[a : b - 1].tolist(), base.timestamp[a : b - 1].tolist()),
                items[-1],
            )
        )
    return cases, "export-valid"


def _evaluate_candidate(svc: Service, cand_id: int) -> None:
    cand = svc.candidates[cand_id - 1]

    def update(**kw) -> None:
        with svc.admin_lock:
            svc.candidates[cand_id - 1] = cand.model_copy(update=kw)

    # the gate is background work: on Linux this thread alone gets the lowest CPU priority
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        live = svc.model
        candidate = load_model(cand.source, svc.index, svc.settings.backend)
        if len(candidate.item_ids) != len(live.item_ids) or any(
            a != b for a, b in zip(candidate.item_ids[1:], live.item_ids[1:], strict=True)
        ):
            update(status="refused", reason="the candidate has a different item vocabulary")
            return
        cases, gate_set = gate_cases(svc, live)
        if not cases:
            update(status="refused", reason="no gate cases", gate_set=gate_set, gate_cases=0)
            return
        live_metric = live.gate_metric(cases)
        cand_metric = candidate.gate_metric(cases)
        figures = dict(
            live_metric=live_metric,
            candidate_metric=cand_metric,
            gate_cases=len(cases),
            gate_set=gate_set,
        )
        if cand_metric < live_metric - svc.settings.gate_tolerance:
            update(
                status="refused",
                reason=f"candidate NDCG@10 {cand_metric:.4f} < live {live_metric:.4f} - "
                f"tolerance {svc.settings.gate_tolerance}",
                **figures,
            )
            return
        svc.sync_items(candidate)
        svc.swap(candidate, cand.model_copy(update=dict(status="swapped", **figures)))
        update(status="swapped", **figures)
    except Exception as e:  # a bad candidate must never take the service down
        update(status="failed", reason=f"{type(e).__name__}: {e}")


# -- the app --------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts requests and times them per route template (pure ASGI)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            svc = getattr(scope.get("app").state, "service", None) if scope.get("app") else None
            if svc is not None and svc.metrics is not None:
                route = scope.get("route")
                name = getattr(route, "path", "unmatched")
                svc.metrics.requests.labels(name, scope["method"], str(status[0])).inc()
                svc.metrics.latency.labels(name).observe(time.perf_counter() - t0)


def create_app(settings: ServeSettings) -> FastAPI:
    """The serving app; the model, index and store are loaded in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
            import faiss

            faiss.omp_set_num_threads(settings.torch_threads)  # one query per request
        index = None
        if settings.ef_search or settings.nprobe:
            defaults = IndexConfig()
            index = IndexConfig(
                ef_search=settings.ef_search or defaults.ef_search,
                nprobe=settings.nprobe or defaults.nprobe,
            )
        pointer = settings.model_pointer or default_path(settings.source, settings.store_url())
        live = read_pointer(pointer) if pointer is not None else None
        model = None
        if live is not None:  # a worker started after a swap serves the swapped-in model
            try:
                model = load_model(live.source, index, settings.backend)
            except Exception:
                log.exception(
                    "could not load the live model %s; serving %s", live.source, settings.source
                )
                live = None
        if model is None:
            model = load_model(settings.source, index, settings.backend)
        store = open_store(settings.store_url())
        batcher = UserBatcher(settings.batch_users) if settings.batch_users else None
        service = Service(
            settings=settings,
            store=store,
            model=model,
            batcher=batcher,
            index=index,
            pointer=pointer,
            live_token=live.token if live is not None else None,
        )
        service.metrics = Metrics(service)
        service.metrics.model.info({"version": model.version})
        service.sync_items(model)
        if live is not None:
            service.record_adopted(live)
        app.state.service = service
        watcher = None
        if pointer is not None:
            watcher = PointerWatcher(pointer, service.adopt, settings.model_poll_seconds)
        # the loaded model is millions of long-lived objects: keep them out of the collector's
        # full passes, which otherwise stall every request for tens of ms now and then
        gc.collect()
        gc.freeze()
        yield
        if watcher is not None:
            watcher.close()
        if batcher is not None:
            batcher.close()
        store.close()

    app = FastAPI(
        title="guim",
        summary="User and item embeddings served: recommendations that learn from events.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    app.include_router(router)
    app.add_middleware(MetricsMiddleware)
    return app


def app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` (several workers): settings from GUIM_SERVE_*."""
    return create_app(ServeSettings())  # type: ignore[call-arg]
