"""The analysis processes: a process pool whose workers each hold a face engine.

Workers are forked from a forkserver that has already imported the analysis code and built
the slow models (ingest/preload.py), so each starts in a fraction of a second. `start_pool`
returns at once: the processes start in the background while the caller opens the database
and lists files.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor

from ..config import Settings


def _ignore_sigint_then_init(settings: Settings) -> None:
    from .analyze import init_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    init_worker(settings)


def start_pool(settings: Settings) -> ProcessPoolExecutor:
    """The analysis processes (one per `settings.workers`), starting in the background."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["facetrail.ingest.preload"])
    pool = ProcessPoolExecutor(settings.workers, context, _ignore_sigint_then_init, (settings,))

    def start() -> None:
        try:
            for _ in range(settings.workers):
                pool.submit(int)
        except RuntimeError:  # the caller shut the pool down first (e.g. the command was refused)
            pass

    threading.Thread(target=start, name="start-analysis-processes", daemon=True).start()
    return pool
