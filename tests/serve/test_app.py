"""The serving API through FastAPI's TestClient: read-your-writes, exclude_seen, popularity
fallback, cold items, caps, admin auth and the gated model swap."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from guim.data.dataset import Sequences
from guim.embed import load_run, recommend
from guim.serve import ServeSettings, create_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(export_dir, tmp_path):
    settings = ServeSettings(
        source=export_dir,
        store=f"sqlite:///{tmp_path / 'events.db'}",
        admin_token=TOKEN,
        max_batch=50,
        max_history=40,
        max_k=200,
        gate_min_cases=10_000,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _items(client) -> list[str]:
    return client.app.state.service.model.item_ids[1:].tolist()


def test_read_your_writes_and_exclude_seen(client, export_dir):
    items = _items(client)
    r = client.get("/users/newcomer/recommendations", params={"k": 5})
    assert r.status_code == 200 and r.json()["fallback"] == "popularity"
    history = items[3:9]
    events = [
        {"user_id": "newcomer", "item_id": i, "event": "view", "timestamp": 1000 + t}
        for t, i in enumerate(history)
    ]
    r = client.post("/events", json={"events": events})
    assert r.json() == {"stored": 6, "duplicates": 0, "unknown_items": 0}
    k = len(items) - len(history)  # every item the user has not seen
    r = client.get("/users/newcomer/recommendations", params={"k": k}).json()
    assert r["fallback"] is None and r["history_length"] == 6
    served = [x["item_id"] for x in r["items"]]
    assert not set(served) & set(history), "exclude_seen masks every seen item"
    # the same list as exact full scoring through the one inference path
    run = load_run(export_dir / "model")
    idx = run.item_index(history).tolist()
    exact, _ = recommend(
        run, Sequences.from_lists([idx], [[2] * 6], [[1000 + t for t in range(6)]]), k=10
    )
    assert served[:10] == [str(x) for x in run.item_ids(exact[0])]
    # one more event changes the answer at once
    client.post("/events", json={"events": [{"user_id": "newcomer", "item_id": served[0]}]})
    again = client.get("/users/newcomer/recommendations", params={"k": 10}).json()
    assert again["history_length"] == 7 and served[0] not in [x["item_id"] for x in again["items"]]
    # exclude_seen=false may return seen items
    r = client.get(
        "/users/newcomer/recommendations", params={"k": len(items), "exclude_seen": False}
    )
    assert set(history) <= {x["item_id"] for x in r.json()["items"]}


def test_known_user_uses_export_history_and_embedding(client):
    uid = next(iter(client.app.state.service.model.base_users))
    r = client.get(f"/users/{uid}/recommendations").json()
    assert r["fallback"] is None and r["history_length"] > 0
    e = client.get(f"/users/{uid}/embedding").json()
    assert np.asarray(e["vectors"]).shape[0] == client.app.state.service.model.n_interests
    assert client.get("/users/nobody-at-all/embedding").status_code == 404


def test_unknown_items_are_stored_and_counted(client):
    r = client.post(
        "/events",
        json={"events": [{"user_id": "u", "item_id": "not-in-catalogue", "event_id": "e1"}]},
    )
    assert r.json() == {"stored": 1, "duplicates": 0, "unknown_items": 1}
    r = client.post(
        "/events",
        json={"events": [{"user_id": "u", "item_id": "not-in-catalogue", "event_id": "e1"}]},
    )
    assert r.json()["duplicates"] == 1, "a repeated event_id is not stored twice"
    assert client.app.state.service.store.count() == 1
    metrics = client.get("/metrics").text
    assert "guim_store_unknown_item_events 1.0" in metrics
    assert 'guim_requests_total{method="POST",route="/events",status="200"} 2.0' in metrics
    assert "guim_request_seconds_bucket" in metrics and "guim_model_info" in metrics


def test_anonymous_recommend_and_similar(client):
    items = _items(client)
    r = client.post(
        "/recommend", json={"history": [{"item_id": items[0]}, {"item_id": items[1]}], "k": 4}
    )
    body = r.json()
    assert r.status_code == 200 and len(body["items"]) == 4 and body["user_id"] is None
    assert not {items[0], items[1]} & {x["item_id"] for x in body["items"]}
    r = client.get(f"/items/{items[0]}/similar", params={"k": 3})
    assert r.status_code == 200 and items[0] not in [x["item_id"] for x in r.json()["items"]]
    r = client.get("/items/no-such-item/similar")
    assert r.status_code == 404 and "no-such-item" in r.json()["detail"]


def test_cold_item_is_searchable_at_once(client):
    model = client.app.state.service.model
    attrs = list(model.attr_idx)[:3]
    r = client.post(
        "/items",
        json={
            "item_id": "brand-new",
            "attributes": [*attrs, "color=never-seen"],
            "title": "a thing",
        },
    )
    assert r.status_code == 201 and r.json()["unknown_attributes"] == ["color=never-seen"]
    assert client.post("/items", json={"item_id": "brand-new"}).json()["created"] is False
    assert client.get("/items/brand-new/similar", params={"k": 3}).status_code == 200
    n = len(model.item_ids)  # every item: the new one must be among them
    r = client.get("/users/x/recommendations", params={"k": 1})  # fallback, no history
    r = client.post("/recommend", json={"history": [{"item_id": model.item_ids[1]}], "k": n})
    assert "brand-new" in [x["item_id"] for x in r.json()["items"]]
    # an event on it is known (not counted as unknown) and masks it for that user
    r = client.post(
        "/events",
        json={
            "events": [
                {"user_id": "c", "item_id": model.item_ids[2]},
                {"user_id": "c", "item_id": "brand-new"},
            ]
        },
    )
    assert r.json()["unknown_items"] == 0
    r = client.get("/users/c/recommendations", params={"k": n}).json()
    assert "brand-new" not in [x["item_id"] for x in r["items"]]


def test_caps_and_validation(client):
    ev = {"user_id": "u", "item_id": "1"}
    r = client.post("/events", json={"events": [ev] * 51})
    assert r.status_code == 413 and "cap of 50" in r.json()["detail"]
    r = client.post("/events", json={"events": [{**ev, "event": "teleport"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "event"
    r = client.post("/events", json={"events": [{**ev, "timestamp": -1}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "timestamp"
    assert client.get("/users/u/recommendations", params={"k": 201}).status_code == 422
    assert client.get("/users/u/recommendations", params={"k": 0}).status_code == 422
    r = client.post("/recommend", json={"history": [{"item_id": "1"}] * 41})
    assert r.status_code == 413
    r = client.post(
        "/events", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert (
        client.post(
            "/events", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


def test_admin_needs_a_token(client, export_dir, tmp_path):
    assert client.get("/admin/models").status_code == 401
    assert client.get("/admin/models", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/admin/models", headers=AUTH).status_code == 200
    r = client.post("/admin/models", json={"source": str(tmp_path)}, headers=AUTH)
    assert r.status_code == 422
    no_token = ServeSettings(source=export_dir, store=f"sqlite:///{tmp_path / 'x.db'}")
    with TestClient(create_app(no_token)) as c:
        r = c.get("/admin/models", headers=AUTH)
        assert r.status_code == 403 and "disabled" in r.json()["detail"]


def _wait(client, cand_id: int) -> dict:
    for _ in range(300):
        cands = client.get("/admin/models", headers=AUTH).json()["candidates"]
        if cands[cand_id - 1]["status"] != "evaluating":
            return cands[cand_id - 1]
        time.sleep(0.05)
    raise AssertionError("candidate still evaluating")


def test_gated_swap(client, good_run, weak_run, export_dir):
    live = client.get("/admin/models", headers=AUTH).json()["live"]["version"]
    r = client.post("/admin/models", json={"source": str(weak_run)}, headers=AUTH)
    assert r.status_code == 202
    refused = _wait(client, r.json()["id"])
    assert refused["status"] == "refused", refused
    assert refused["candidate_metric"] < refused["live_metric"]
    assert f"{refused['candidate_metric']:.4f}" in refused["reason"]
    assert client.get("/users/a/recommendations").json()["model_version"] == live
    # the same model as a run directory: not worse, so it is swapped in
    r = client.post("/admin/models", json={"source": str(good_run)}, headers=AUTH)
    swapped = _wait(client, r.json()["id"])
    assert swapped["status"] == "swapped", swapped
    assert swapped["candidate_metric"] == pytest.approx(swapped["live_metric"], abs=1e-6)
    assert swapped["gate_set"] == "export-valid" and swapped["gate_cases"] > 0
    models = client.get("/admin/models", headers=AUTH).json()
    assert models["live"]["source"] == str(good_run)


def test_a_swap_reaches_every_app_on_the_model_pointer(export_dir, good_run, tmp_path):
    """Two apps on one model pointer, as two worker processes: a swap made on one is served by
    the other once it is loaded (never a half-loaded model), listed among its candidates, and an
    app started afterwards starts on the swapped-in model."""
    candidate = shutil.copytree(good_run, tmp_path / "good-v2")  # same weights, new version

    def app():
        return create_app(
            ServeSettings(
                source=export_dir,
                store=f"sqlite:///{tmp_path / 'events.db'}",
                admin_token=TOKEN,
                gate_min_cases=10_000,
                model_pointer=tmp_path / "live-model.json",
                model_poll_seconds=0.05,
            )
        )

    with TestClient(app()) as a, TestClient(app()) as b:
        old = b.get("/ready").json()["model_version"]
        r = a.post("/admin/models", json={"source": str(candidate)}, headers=AUTH)
        assert _wait(a, r.json()["id"])["status"] == "swapped"
        new = a.get("/ready").json()["model_version"]
        assert new != old and new.startswith("good-v2-")
        for _ in range(400):
            served = b.get("/users/someone/recommendations").json()["model_version"]
            assert served in (old, new)
            if served == new:
                break
            time.sleep(0.05)
        assert served == new, "the other app never served the swapped-in model"
        listed = b.get("/admin/models", headers=AUTH).json()
        assert listed["live"]["source"] == str(candidate)
        assert listed["candidates"][-1]["status"] == "swapped"
        assert "swapped in by worker" in listed["candidates"][-1]["reason"]
        with TestClient(app()) as c:
            assert c.get("/ready").json()["model_version"] == new


def test_micro_batching_matches_one_at_a_time(client):
    from concurrent.futures import ThreadPoolExecutor

    from guim.serve.batching import UserBatcher

    model = client.app.state.service.model
    users = list(model.base_users)[:40]
    histories = [model.base_history(u) for u in users]
    batcher = UserBatcher(max_batch=16)
    try:
        with ThreadPoolExecutor(8) as pool:
            batched = list(pool.map(lambda h: batcher.embed(model, h), histories))
    finally:
        batcher.close()
    for h, v in zip(histories, batched, strict=True):
        np.testing.assert_allclose(v, model.user_vectors([h])[0], rtol=1e-5, atol=1e-5)


def test_micro_batching_from_the_event_loop_matches_one_at_a_time(client):
    """Coroutines awaiting `embed_async` together land in shared batches and get their own
    vectors back (resolved on their loop by the worker thread)."""
    import asyncio

    from guim.serve.batching import UserBatcher

    model = client.app.state.service.model
    histories = [model.base_history(u) for u in list(model.base_users)[:40]]
    batcher = UserBatcher(max_batch=16)

    async def all_at_once() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.embed_async(model, h) for h in histories))

    try:
        batched = asyncio.run(all_at_once())
    finally:
        batcher.close()
    for h, v in zip(histories, batched, strict=True):
        np.testing.assert_allclose(v, model.user_vectors([h])[0], rtol=1e-5, atol=1e-5)
    assert len({v.tobytes() for v in batched}) > 1
