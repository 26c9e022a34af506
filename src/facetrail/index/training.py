"""When and where the FAISS store trains its `CompressedIndex`: the one training policy.

* Due (`needs_training`): at or above ``threshold`` faces (``exact_limit + 1``, and at least the
  `MIN_TRAIN` that `CompressedIndex.train` needs) and untrained, or trained for a gallery so much
  smaller that the list count `default_nlist` would pick has doubled (later adds were encoded with
  centroids chosen for fewer faces, and lists grow longer).
* Back to exact: at `maintain`, a trained index holding fewer than ``exact_limit / 2`` faces (the
  limit was raised, or most faces were deleted) drops its structure.
* Where: with ``background`` (the web server) in a daemon thread while the current structure keeps
  answering; without (command-line commands, which exit when done and must not leave a thread to
  be killed) in the caller's thread: the add that makes a training due, or `maintain`.
* How, without blocking searches: under the store's lock a `snapshot` is taken (rows are
  append-only, so the rows held now never change); the snapshot is trained without the lock;
  under the lock again it is `install`-ed (rows added meanwhile are encoded into it) and saved.
  Deletions made meanwhile stay flagged, so they are never returned.
* A failed training is reported (`training_error`) and tried again once the gallery has grown by
  10 %, or by `train_now`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .compressed import MIN_TRAIN, default_nlist

if TYPE_CHECKING:
    from .compressed import CompressedIndex

log = logging.getLogger(__name__)


class StoreTraining:
    """The training half of `FaissStore` (mixed into it). The store provides ``folder``,
    ``exact_limit``, ``background``, ``owner``, ``owner_pid``, ``closed``, ``_lock`` (an RLock held
    by every call) and ``_inner`` (the live `CompressedIndex`), and calls `_init_training`."""

    folder: Path
    exact_limit: int
    background: bool
    owner: bool
    owner_pid: str
    closed: bool
    _lock: threading.RLock
    _inner: CompressedIndex

    def _init_training(self) -> None:
        self._hold = 0
        self._training = False
        self._thread: threading.Thread | None = None
        self.training_error: str | None = None  # the last failure, until a training succeeds
        self._retry_at: int | None = None
        self.trainings = 0  # trainings finished by this object
        self.last_training_seconds: float | None = None

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"the index in {self.folder} is closed")

    # ------------------------------------------------------------------ policy

    @property
    def training(self) -> bool:
        return self._training

    @property
    def threshold(self) -> int:
        """Faces from which the compressed structure is trained."""
        return max(self.exact_limit + 1, MIN_TRAIN)

    @property
    def needs_training(self) -> bool:
        """Above the limit and untrained, or trained for a gallery much smaller than today's."""
        with self._lock:
            n = len(self._inner)
            if n < self.threshold:
                return False
            return not self._inner.trained or default_nlist(n) >= 2 * self._inner.nlist

    @contextmanager
    def maintenance_paused(self) -> Iterator[StoreTraining]:
        """No training while inside (e.g. during a sync); on leaving, `maintain` once."""
        with self._lock:
            self._hold += 1
        try:
            yield self
        finally:
            with self._lock:
                self._hold -= 1
                if not self._hold:
                    self.maintain()

    def maintain(self) -> None:
        """Settle the regime: back to exact search if the gallery shrank below half the limit, then
        start a training if one is due."""
        with self._lock:
            if not self.owner or self.closed or self._training or self._hold:
                return
            if self._inner.trained and len(self._inner) < self.exact_limit // 2:
                self._inner.untrain()
                self._inner.save()
            self._maybe_train()

    # ------------------------------------------------------------------ running

    def _maybe_train(self) -> None:
        """Under the lock: start a training if one is due (in a thread, or here)."""
        if not self.owner or self.closed or self._training or not self.needs_training:
            return
        if self._retry_at is not None and len(self._inner) < self._retry_at:
            return  # the last training failed: try again once the gallery has grown by 10 %
        self._training = True
        if self.background:
            self._thread = threading.Thread(
                target=self._run_training, name="facetrail-index-training", daemon=True
            )
            self._thread.start()
        else:
            self._run_training()

    def _run_training(self, raise_errors: bool = False) -> None:
        try:
            self._train()
        except Exception as exc:
            self.training_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = len(self._inner) * 11 // 10 + 1
            if raise_errors:
                raise
            log.exception("training the compressed index of %s failed (searches stay as they were)", self.folder)
        finally:
            with self._lock:
                self._training = False
                if self._thread is threading.current_thread():
                    self._thread = None
                    self._maybe_train()  # the gallery may have grown past another threshold meanwhile

    def _train(self) -> None:
        started = time.monotonic()
        with self._lock:
            inner = self._inner
            snapshot = inner.snapshot()
        snapshot.train()  # k-means and encoding of the snapshot: the long part, without the lock
        with self._lock:
            if self.closed or self._inner is not inner:  # closed or rebuilt meanwhile
                return
            inner.install(snapshot)
            inner.save()
            self.trainings += 1
            self.training_error = None
            self._retry_at = None
            self.last_training_seconds = time.monotonic() - started

    def train_now(self) -> None:
        """Train (or retrain) the compressed structure now, in this thread, and save it. Other threads'
        searches are answered meanwhile; raises if this is a guest or holds under 1000 faces."""
        if not self.owner:
            raise RuntimeError(f"{self.folder} is owned by another process (pid {self.owner_pid})")
        while True:
            self.wait()
            with self._lock:
                self._check_open()
                if not self._training:
                    if len(self._inner) < MIN_TRAIN:
                        raise ValueError(f"need at least {MIN_TRAIN} faces to train, have {len(self._inner)}")
                    self._retry_at = None
                    self._training = True
                    break
            time.sleep(0.05)  # another thread's train_now
        self._run_training(raise_errors=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background training (and any it chains) to finish; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None or thread is threading.current_thread():
                return True
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
