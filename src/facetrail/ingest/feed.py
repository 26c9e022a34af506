"""A producer (a crawl, a URL list, an archive reader) running in a thread of its own, feeding the
ingest pipeline through a bounded queue: iterate a `Feed` to get what it produces, or `None`
when nothing new has come for a moment, and at least every `IDLE_SECONDS` however steadily things
come (the pipeline then stores what it has: a slow, steady crawl is stored as it goes)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

R = TypeVar("R")
_DONE = object()
IDLE_SECONDS = 0.2


class Stopped(Exception):
    """Raised in the producer when the consumer has stopped (e.g. Ctrl-C): it should end."""


class Feed(Generic[R]):
    """Runs `produce(put)` in a thread when iterated; `result` is what it returned.

    `put` blocks while the queue is full (so a fast producer waits for the face analysis) and
    raises `Stopped` once the consumer has gone away. An exception in the producer is raised by
    the iteration, after what was produced before it. `stored()`, called by the consumer once
    everything produced is stored, runs `on_stored` (a crawl then forgets its resume marker)."""

    def __init__(self, produce: Callable[[Callable[[object], None]], R], maxsize: int = 64,
                 on_stored: Callable[[], None] | None = None) -> None:
        self._produce = produce
        self._on_stored = on_stored
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.result: R | None = None

    def stored(self) -> None:
        """Everything produced is stored (not merely produced, nor consumed)."""
        if self._on_stored is not None and self._error is None:
            self._on_stored()

    def _put(self, element: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(element, timeout=IDLE_SECONDS)
                return
            except queue.Full:
                continue
        raise Stopped("the ingest stopped")

    def _run(self) -> None:
        try:
            self.result = self._produce(self._put)
        except BaseException as exc:  # noqa: BLE001 - raised again by __iter__
            self._error = exc
        finally:
            try:
                self._put(_DONE)
            except Stopped:
                pass

    def __iter__(self) -> Iterator[object | None]:
        thread = threading.Thread(target=self._run, name="facetrail-feed", daemon=True)
        thread.start()
        try:
            pause = time.monotonic() + IDLE_SECONDS
            while True:
                if time.monotonic() >= pause:
                    pause = time.monotonic() + IDLE_SECONDS
                    yield None
                try:
                    element = self._queue.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    pause = time.monotonic() + IDLE_SECONDS
                    yield None
                    continue
                if element is _DONE:
                    break
                yield element
        finally:
            self._stop.set()
            thread.join()
        if self._error is not None and not isinstance(self._error, Stopped):
            raise self._error
