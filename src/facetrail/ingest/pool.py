"""The analysis processes: a process pool whose workers each hold a face engine.

Workers are forked from a forkserver that has already imported the analysis code and built
the slow models (ingest/preload.py), so each starts in a fraction of a second. `start_pool`
returns at once: the processes start in the background while the caller opens the database
and lists files.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from ..config import Settings


def exit_with_parent() -> None:
    """End this process when its parent is gone (killed, e.g. by SIGKILL: then nobody will stop
    this one). The forkserver watches the command that started it, each analysis process the
    forkserver, so a killed ingest leaves no analysis process behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _ignore_sigint_then_init(settings: Settings) -> None:
    from .analyze import init_worker

    exit_with_parent()
    # The parent handles Ctrl-C and SIGTERM (sent to the whole group by a terminal or systemd) and
    # stops the pool; an analysis process whose parent is gone ends when its queue closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
