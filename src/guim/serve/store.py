"""Where served events live: SQLite in WAL mode (default, one machine, created on first use) or
Redis (several replicas on one store). A write returns only once the store has it durably
(SQLite: committed with synchronous=FULL; Redis: run it with appendonly + appendfsync always).

Events carry raw ids; an optional client `event_id` makes retries idempotent (a repeated id is
counted as a duplicate, not stored twice). Events of items the model does not know are stored
with known=0 and counted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


@dataclass(frozen=True)
class StoredEvent:
    user_id: str
    item_id: str
    event: int
    timestamp: int
    known: bool
    event_id: str | None = None


@dataclass(frozen=True)
class AppendResult:
    stored: int
    duplicates: int
    unknown_items: int


class EventStore(Protocol):
    url: str
    local: bool  # reads take microseconds (an in-process file), not a network round trip

    def append(self, events: list[StoredEvent]) -> AppendResult: ...

    def history(self, user_id: str, limit: int) -> list[tuple[str, int, int]]:
        """The user's last `limit` events as (item_id, event, timestamp), in time order."""
        ...

    def recent_users(self, n: int) -> list[str]: ...

    def count(self) -> int: ...

    def unknown_count(self) -> int: ...

    def add_item(self, item_id: str, record: dict) -> bool: ...

    def items(self, start: int = 0) -> list[dict]: ...

    def n_items(self) -> int: ...

    def close(self) -> None: ...


def open_store(url: str) -> EventStore:
    """sqlite:///path/to/events.db or redis://host:port[/db]."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return SqliteStore(url)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(url)
    raise ValueError(f"unknown store {url!r}: use sqlite:///path or redis://host:port")


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    known INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, id);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
"""


class SqliteStore:
    """SQLite in WAL mode: one connection per thread, writes serialised by SQLite's lock."""

    local = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        con = self._con()
        con.executescript(SCHEMA)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    def append(self, events: list[StoredEvent]) -> AppendResult:
        # one writer at a time within the process: threads that met SQLite's write lock would
        # wait in its busy handler, which sleeps in steps of up to 100 ms (the p99 of POST
        # /events under load); other processes still meet it
        with self._write_lock:
            return self._append(events)

    def _append(self, events: list[StoredEvent]) -> AppendResult:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_id, item_id, event, ts, known) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (e.event_id, e.user_id, e.item_id, e.event, e.timestamp, int(e.known))
                    for e in events
                ],
            )
            stored = con.total_changes - before
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        # only events whose event_id was already stored are ignored
        unknown = sum(not e.known for e in events)
        return AppendResult(stored, len(events) - stored, unknown)

    def history(self, user_id: str, limit: int) -> list[tuple[str, int, int]]:
        rows = (
            self._con()
            .execute(
                "SELECT item_id, event, ts FROM (SELECT id, item_id, event, ts FROM events "
                "WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id",
                (user_id, limit),
            )
            .fetchall()
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def recent_users(self, n: int) -> list[str]:
        rows = (
            self._con()
            .execute(
                "SELECT user_id FROM events GROUP BY user_id ORDER BY MAX(id) DESC LIMIT ?", (n,)
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def count(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def unknown_count(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM events WHERE known = 0").fetchone()[0])

    def add_item(self, item_id: str, record: dict) -> bool:
        cur = self._con().execute(
            "INSERT OR IGNORE INTO items (item_id, record) VALUES (?, ?)",
            (item_id, json.dumps(record)),
        )
        return cur.rowcount == 1

    def items(self, start: int = 0) -> list[dict]:
        rows = (
            self._con()
            .execute("SELECT record FROM items ORDER BY id LIMIT -1 OFFSET ?", (start,))
            .fetchall()
        )
        return [json.loads(r[0]) for r in rows]

    def n_items(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# Appends a batch atomically: dedupe by event_id, push onto the user's list, count, remember the
# user as recent. ARGV: prefix, then 5 values per event.
_APPEND_LUA = """
local p = ARGV[1]
local stored, dup, unknown = 0, 0, 0
for i = 2, #ARGV, 5 do
  local eid, user, payload, known = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if eid ~= '' and not redis.call('SET', p .. 'eid:' .. eid, '1', 'NX') then
    dup = dup + 1
  else
    redis.call('RPUSH', p .. 'hist:' .. user, payload)
    redis.call('INCR', p .. 'n_events')
    if known == '0' then
      redis.call('INCR', p .. 'n_unknown')
      unknown = unknown + 1
    end
    redis.call('LPUSH', p .. 'recent', user)
    stored = stored + 1
  end
end
redis.call('LTRIM', p .. 'recent', 0, 99999)
return {stored, dup, unknown}
"""


class RedisStore:
    """Redis: a list per user, counters, a capped list of recent users, run-time items."""

    local = False

    def __init__(self, url: str, prefix: str = "guim:") -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.client.ping()
        self._append = self.client.register_script(_APPEND_LUA)

    def append(self, events: list[StoredEvent]) -> AppendResult:
        args: list[str] = [self.prefix]
        for e in events:
            payload = json.dumps([e.item_id, e.event, e.timestamp])
            args += [e.event_id or "", e.user_id, payload, "1" if e.known else "0", ""]
        stored, dup, unknown = self._append(args=args)
        return AppendResult(int(stored), int(dup), int(unknown))

    def history(self, user_id: str, limit: int) -> list[tuple[str, int, int]]:
        raw = self.client.lrange(f"{self.prefix}hist:{user_id}", -limit, -1)
        rows = [json.loads(r) for r in raw]
        rows.sort(key=lambda r: r[2])  # stable: arrival order among equal timestamps
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def recent_users(self, n: int) -> list[str]:
        seen: dict[str, None] = {}
        for u in self.client.lrange(f"{self.prefix}recent", 0, 99999):
            seen.setdefault(u, None)
            if len(seen) >= n:
                break
        return list(seen)

    def count(self) -> int:
        return int(self.client.get(f"{self.prefix}n_events") or 0)

    def unknown_count(self) -> int:
        return int(self.client.get(f"{self.prefix}n_unknown") or 0)

    def add_item(self, item_id: str, record: dict) -> bool:
        if not self.client.hsetnx(f"{self.prefix}item_ids", item_id, "1"):
            return False
        self.client.rpush(f"{self.prefix}items", json.dumps(record))
        return True

    def items(self, start: int = 0) -> list[dict]:
        return [json.loads(r) for r in self.client.lrange(f"{self.prefix}items", start, -1)]

    def n_items(self) -> int:
        return int(self.client.llen(f"{self.prefix}items"))

    def close(self) -> None:
        self.client.close()
