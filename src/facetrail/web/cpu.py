"""CPU work off the event loop, in a bounded pool.

The web app answers every request on one event loop. Decoding a photo, finding and
describing its faces, searching the index, taking an opt-out and checking a password take
from milliseconds to seconds of CPU: run on the loop, they stall every other request
(/healthz, pages, media) for as long. They run here instead: `cpu_workers` threads (setting;
default one per core but one, which is left to the event loop) and at most `cpu_queue` jobs
waiting for them. A job that finds the
pool full is not queued: `run` raises Refused `busy` (503 with Retry-After), so a burst of
heavy uploads costs its senders a retry, and the server's memory and latency stay bounded.

Threads, not processes: dlib, onnxruntime, Pillow and FAISS release the GIL while they work,
the searcher keeps one face engine behind its own lock, and each job opens its own database
session in the worker thread (the services do that themselves). Uploaded bytes are read on
the loop (bounded by `upload_max_bytes`) before the job is handed over.

The workers run at a lower scheduling priority than the rest of the server (Linux lets one
thread be niced): when the cores are busy, the event loop and the threads answering pages and
media run first, and a photo's analysis takes what is left. After each job, memory the job
freed is handed back to the operating system (glibc's malloc_trim), so the server's footprint
returns to its resting size between heavy uploads instead of creeping up to the largest
one's.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request

from ..config import Settings
from ..errors import Refused

T = TypeVar("T")
MAX_RETRY_AFTER = 60  # seconds: never tell a client to wait longer than this
WORKER_NICENESS = 10  # added to the workers' nice value: the loop and light requests go first


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One per core but one: the event loop (and the threads that answer pages, result pages and
    media) keep a core. On 2 cores, bench/load.py measured 1 worker against 2: the same searches
    answered, /healthz p99 about 100 ms against 140-370 ms, peak RSS about 610 MB against 650-700."""
    return max(1, cores() - 1)


def lower_priority() -> None:
    """Nice the calling thread by WORKER_NICENESS (Linux: a thread id is a process id to
    setpriority). Lowering one's own priority needs no privilege; elsewhere nothing happens."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS))
    except (AttributeError, OSError):
        pass


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def give_back_memory() -> None:
    """Return the heap's free memory to the operating system (glibc; elsewhere nothing)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class CpuPool:
    """`workers` threads, at most `queue` jobs waiting; `run` refuses (busy) beyond that."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"a CPU pool needs at least 1 worker and 0 or more queue slots, not {workers}, {queue}")
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="facetrail-cpu", initializer=lower_priority)
        self._lock = threading.Lock()
        self._taken = 0  # jobs running or waiting
        self._seconds = 1.0  # how long a job takes (moving average), for Retry-After

    @classmethod
    def from_settings(cls, settings: Settings) -> CpuPool:
        return cls(settings.cpu_workers or default_workers(), settings.cpu_queue)

    @property
    def taken(self) -> int:
        """Jobs running or waiting now."""
        return self._taken

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead, shared by the workers."""
        rounds = math.ceil(max(self._taken, 1) / self.workers)
        return max(1, min(MAX_RETRY_AFTER, math.ceil(rounds * self._seconds)))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread; the loop serves other requests meanwhile.
        Raises Refused `busy` at once when `workers + queue` jobs are already running or waiting.
        A job whose caller gives up (client gone) is dropped if it has not started, else it
        finishes (its slot is free only then)."""
        with self._lock:
            if self._taken >= self.workers + self.queue:
                raise Refused("The server is busy; please try again shortly.", "busy",
                              retry_after=self.retry_after())
            self._taken += 1
        try:
            future = self._executor.submit(self._timed, fn, args, kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _timed(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.monotonic() - start
            with self._lock:
                self._seconds = 0.8 * self._seconds + 0.2 * elapsed
            give_back_memory()

    def _release(self) -> None:
        with self._lock:
            self._taken -= 1

    def close(self) -> None:
        """Drop the jobs still waiting and wait for the running ones to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)


async def run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the app's CPU pool (see CpuPool.run)."""
    return await request.app.state.cpu.run(fn, *args, **kwargs)
