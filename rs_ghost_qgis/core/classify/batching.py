"""Tiles batched through the model on a worker thread, their results taken in reading order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..model.runtime import Model

BATCHES_IN_FLIGHT = 2  # batches running or waiting on the inference thread: one runs while the next is read


class Batcher:
    """Collects tiles across strips into batches of ``batch_size``; keeps results in order.

    The full batches run one after another on a worker thread: onnxruntime releases the GIL, so
    the next strip is read and finished tiles are written while a batch runs. The last, partial
    batch runs on the caller's thread in ``flush``, which would only wait for it. At most
    BATCHES_IN_FLIGHT batches run or wait, which bounds the memory; a batch's error is raised
    in the caller's thread when its results are collected. ``close`` must end every use.
    """

    def __init__(self, model: Model, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.pending: list[np.ndarray] = []
        self.pending_statistics: list[np.ndarray] = []  # an adapted model's band statistics, tile for tile
        self.pending_count = 0
        self.results: list[np.ndarray] = []
        self._ready = 0  # probability rows in ``results``
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rs_ghost_predict")
        self._running: deque[Future] = deque()  # submitted batches, oldest first

    @property
    def ready(self) -> int:
        """How many tiles' probabilities can be taken now (of the batches already finished, in order)."""
        while self._running and self._running[0].done():
            self._collect()
        return self._ready

    def put(self, tiles: np.ndarray, check_cancel: Callable[[], None], statistics: np.ndarray | None = None) -> None:
        """Queue tiles (with their band statistics for an adapted model); start every full batch."""
        if len(tiles):
            self.pending.append(tiles)
            if statistics is not None:
                self.pending_statistics.append(statistics)
            self.pending_count += len(tiles)
        if self.pending_count >= self.batch_size:
            self._run_full_batches(check_cancel)

    def flush(self, check_cancel: Callable[[], None]) -> None:
        """Wait for every batch, then run what is left, however few, on the caller's thread.

        The caller would only wait for that last batch, so it loses nothing by running it; and a
        raster of one batch then needs no worker thread at all. A new thread's first inference
        is slow: glibc gives it a fresh malloc arena, whose pages fault in on first use (measured:
        41 ms for 24 tiles on a new thread against 26 ms on one that ran before).
        """
        while self._running:
            self._collect()
        if self.pending_count:
            check_cancel()
            tiles = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            statistics = np.concatenate(self.pending_statistics) if self.pending_statistics else None
            self.pending, self.pending_statistics, self.pending_count = [], [], 0
            self.results.append(self._predict(tiles, statistics))
            self._ready += len(tiles)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` probability rows, in the order their tiles were put (waits for them)."""
        if count == 0:
            return np.zeros((0, self.model.card.num_classes), dtype=np.float32)
        while self._ready < count:
            self._collect()
        merged = np.concatenate(self.results) if len(self.results) > 1 else self.results[0]
        self.results = [merged[count:]] if len(merged) > count else []
        self._ready -= count
        return merged[:count]

    def close(self) -> None:
        """Drop the batches not started and wait for the running one: nothing runs after a run ends."""
        for future in self._running:
            future.cancel()
        self._worker.shutdown(wait=True)

    def _collect(self) -> None:
        """Move the oldest batch's probabilities into ``results`` (waiting for it; raising its error)."""
        probabilities = self._running.popleft().result()
        self.results.append(probabilities)
        self._ready += len(probabilities)

    def _predict(self, tiles: np.ndarray, statistics: np.ndarray | None) -> np.ndarray:
        """The model's probabilities for ``tiles`` (an adapted model's head also reads their band statistics)."""
        return self.model.predict(tiles) if statistics is None else self.model.predict(tiles, statistics)

    def _run_full_batches(self, check_cancel: Callable[[], None]) -> None:
        """Start every full batch of the pending tiles on the worker thread; keep the rest pending."""
        tiles = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        statistics = np.concatenate(self.pending_statistics) if self.pending_statistics else None
        count = (len(tiles) // self.batch_size) * self.batch_size
        for first in range(0, count, self.batch_size):
            check_cancel()
            while len(self._running) >= BATCHES_IN_FLIGHT:
                self._collect()
            part = slice(first, first + self.batch_size)
            chosen = statistics[part] if statistics is not None else None
            self._running.append(self._worker.submit(self._predict, tiles[part], chosen))
        rest = tiles[count:]
        self.pending = [rest] if len(rest) else []
        self.pending_statistics = [statistics[count:]] if statistics is not None and len(rest) else []
        self.pending_count = len(rest)
