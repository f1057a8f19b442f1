"""Micro-batching of user embedding: requests that arrive while the model is busy are embedded
together in one `embed_users` call (one forward pass instead of many), with no added wait -- a
request alone on the server is embedded at once."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

from guim.serve.model import History, ServedModel


class UserBatcher:
    """A worker thread that drains the queue of pending histories into batches of at most
    `max_batch` (grouped by model, so a swap never mixes models within a batch)."""

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="guim-user-batcher", daemon=True)
        self._thread.start()

    def embed(self, model: ServedModel, history: History) -> np.ndarray:
        """(K, D) user vectors of one history, computed in whatever batch it lands in."""
        fut: Future = Future()
        self._queue.put((model, history, fut))
        return fut.result()

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
                group = [(h, f) for m, h, f in batch if m is model]
                try:
                    vectors = model.user_vectors([h for h, _ in group])
                except Exception as e:  # handed to the waiting requests
                    for _, f in group:
                        f.set_exception(e)
                    continue
                for (_, f), v in zip(group, vectors, strict=True):
                    f.set_result(v)
