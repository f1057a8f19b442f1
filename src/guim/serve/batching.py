"""Micro-batching of user embedding: requests that arrive while the model is busy are embedded
together in one `embed_users` call (one forward pass instead of many), with no added wait -- a
request alone on the server is embedded at once.

Async routes await `embed_async` on the event loop: the worker thread hands each batch's vectors
back with one `call_soon_threadsafe` per loop, so a request costs one thread hop, not a hop to
the thread pool and another to the batcher."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from guim.serve.model import History, ServedModel

Waiter = Future | tuple[asyncio.AbstractEventLoop, asyncio.Future]


class UserBatcher:
    """A worker thread that drains the queue of pending histories into batches of at most
    `max_batch` (grouped by model, so a swap never mixes models within a batch)."""

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="guim-user-batcher", daemon=True)
        self._thread.start()

    def embed(self, model: ServedModel, history: History) -> np.ndarray:
        """(K, D) user vectors of one history, computed in whatever batch it lands in."""
        fut: Future = Future()
        self._queue.put((model, history, fut))
        return fut.result()

    async def embed_async(self, model: ServedModel, history: History) -> np.ndarray:
        """`embed` for a coroutine on the running event loop (which it never blocks)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((model, history, (loop, fut)))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            for model in {id(m): m for m, _, _ in batch}.values():
                group = [(h, w) for m, h, w in batch if m is model]
                try:
                    vectors = model.user_vectors([h for h, _ in group])
                except Exception as e:  # handed to the waiting requests
                    _resolve([w for _, w in group], [None] * len(group), e)
                    continue
                _resolve([w for _, w in group], list(vectors), None)


def _resolve(waiters: list[Waiter], values: list, error: Exception | None) -> None:
    """Set every waiter's result (or the error): thread futures at once, asyncio futures in one
    callback per event loop."""
    on_loop: dict[int, tuple[asyncio.AbstractEventLoop, list]] = {}
    for w, v in zip(waiters, values, strict=True):
        if isinstance(w, Future):
            if error is None:
                w.set_result(v)
            else:
                w.set_exception(error)
        else:
            loop, fut = w
            on_loop.setdefault(id(loop), (loop, []))[1].append((fut, v))
    for loop, pending in on_loop.values():
        callback: Callable[[], None] = lambda p=pending: _set_all(p, error)  # noqa: E731
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(callback)


def _set_all(pending: list[tuple[asyncio.Future, np.ndarray | None]], error: Exception | None):
    for fut, v in pending:
        if fut.done():  # the request was cancelled (client gone)
            continue
        if error is None:
            fut.set_result(v)
        else:
            fut.set_exception(error)
