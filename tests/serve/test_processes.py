"""Real processes: one `guim serve` (uvicorn) on loopback, a gated swap reaching both workers of
`--workers 2`, two replicas on one real redis-server (an event posted to one is in the other's
next answer), and kill -9 while events are posted (every acknowledged event is in the store
after a restart, none twice)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def server(source: Path, store: str, cli: bool = False, workers: int = 1, **settings: str):
    """A serving process on a free loopback port: `guim serve` or plain `uvicorn --factory`
    (with `workers` worker processes; `settings` as GUIM_SERVE_* variables)."""
    port = free_port()
    env = {**os.environ, "GUIM_SERVE_SOURCE": str(source), "GUIM_SERVE_STORE": store}
    env |= {f"GUIM_SERVE_{k.upper()}": v for k, v in settings.items()}
    if cli:
        cmd = [
            sys.executable,
            "-m",
            "guim.cli",
            "serve",
            str(source),
            "--store",
            store,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "guim.serve.app:app_from_env",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_one_real_uvicorn_process(export_dir, tmp_path):
    store = f"sqlite:///{tmp_path / 'ev.db'}"
    with server(export_dir, store, cli=True) as (url, _), httpx.Client(base_url=url) as c:
        assert c.get("/users/someone/recommendations").json()["fallback"] == "popularity"
        item = c.get("/users/someone/recommendations").json()["items"][0]["item_id"]
        assert (
            c.post(
                "/events", json={"events": [{"user_id": "someone", "item_id": item}]}
            ).status_code
            == 200
        )
        r = c.get("/users/someone/recommendations").json()
        assert r["fallback"] is None and item not in [x["item_id"] for x in r["items"]]
        assert "guim_requests_total" in c.get("/metrics").text


def answers_by_worker(url: str, path: str, rounds: int = 24) -> list[dict]:
    """`rounds` answers of `path`, 8 at a time, each on a new connection (so any worker of the
    server may accept it)."""

    def one(_) -> dict:
        r = httpx.get(f"{url}{path}", timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(rounds)))


def test_a_swap_reaches_every_worker(export_dir, good_run, tmp_path):
    """`guim serve --workers 2`: a candidate posted to whichever worker takes the request is
    gated and swapped there, and the other worker serves it too (through the model pointer);
    every answer meanwhile is a 200 from the old model or the new one. When the server stops,
    the pointer's directory (in the temp directory, named by the supervisor) is removed."""
    candidate = shutil.copytree(good_run, tmp_path / "good-v2")  # same weights, new version
    store = f"sqlite:///{tmp_path / 'ev.db'}"
    opts = dict(admin_token="s3cret", gate_min_cases="10000", model_poll_seconds="0.1")
    pointers = Path(tempfile.gettempdir())
    with server(export_dir, store, cli=True, workers=2, **opts) as (url, proc):
        supervisor = proc.pid
        try:
            deadline = time.time() + 40
            old: dict[int, str] = {}
            while len(old) < 2 and time.time() < deadline:  # both workers up and answering
                old |= {a["pid"]: a["model_version"] for a in answers_by_worker(url, "/ready")}
            assert len(old) == 2, f"answers from workers {sorted(old)} only"
            (before,) = set(old.values())
            after = "good-v2-" + before.rsplit("-", 1)[1]  # the version names the weights' hash
            r = httpx.post(
                f"{url}/admin/models",
                json={"source": str(candidate)},
                headers={"Authorization": "Bearer s3cret"},
            )
            assert r.status_code == 202, r.text
            new: dict[int, str] = {}
            while time.time() < deadline:
                for a in answers_by_worker(url, "/ready"):
                    assert a["model_version"] in (before, after)
                    new[a["pid"]] = a["model_version"]
                if len(new) == 2 and before not in new.values():
                    break
                time.sleep(0.1)
            assert set(new) == set(old), "the same two workers answered"
            assert set(new.values()) == {after}, new
            assert list(pointers.glob(f"guim-serve-{supervisor}-*")), "the swap wrote a pointer"
        except BaseException:
            for d in pointers.glob(f"guim-serve-{supervisor}-*"):
                shutil.rmtree(d, ignore_errors=True)
            raise
    assert proc.returncode == 0 or proc.returncode == -signal.SIGTERM, proc.returncode
    assert not list(pointers.glob(f"guim-serve-{supervisor}-*")), "pointer left behind"


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "no redis-server binary: install it (Debian: apt-get install redis-server) to run "
            "the replica test"
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def test_two_replicas_share_one_redis(export_dir, redis_url):
    with server(export_dir, redis_url) as (a, _), server(export_dir, redis_url) as (b, _):
        ca, cb = httpx.Client(base_url=a), httpx.Client(base_url=b)
        items = ca.post("/recommend", json={"history": [], "k": 3}).json()["items"]
        assert cb.get("/users/shared/recommendations").json()["fallback"] == "popularity"
        ca.post("/events", json={"events": [{"user_id": "shared", "item_id": items[0]["item_id"]}]})
        r = cb.get("/users/shared/recommendations").json()
        assert r["fallback"] is None and r["history_length"] == 1
        assert items[0]["item_id"] not in [x["item_id"] for x in r["items"]]
        # a cold item added on one replica is searchable on the other
        assert ca.post("/items", json={"item_id": "from-a", "attributes": []}).status_code == 201
        assert cb.get("/items/from-a/similar").status_code == 200


def test_kill_9_loses_no_acknowledged_event(export_dir, tmp_path):
    db = tmp_path / "ev.db"
    acked: list[str] = []
    with server(export_dir, f"sqlite:///{db}") as (url, proc):
        stop = threading.Event()

        def post() -> None:
            with httpx.Client(base_url=url, timeout=5) as c:
                n = 0
                while not stop.is_set():
                    batch = [
                        {
                            "user_id": f"u{n % 7}",
                            "item_id": "1",
                            "timestamp": n + j,
                            "event_id": f"e{n + j}",
                        }
                        for j in range(5)
                    ]
                    try:
                        r = c.post("/events", json={"events": batch})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acked.extend(e["event_id"] for e in batch)
                    n += 5

        t = threading.Thread(target=post)
        t.start()
        while len(acked) < 100:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t.join(10)
    with server(export_dir, f"sqlite:///{db}") as (url, _):
        assert httpx.get(f"{url}/ready").status_code == 200
    rows = sqlite3.connect(db).execute("SELECT event_id FROM events").fetchall()
    stored = [r[0] for r in rows]
    assert len(stored) == len(set(stored)), "no event stored twice"
    assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} acknowledged events lost"
