"""Ctrl-C that never tears a transaction: a command that asks for it (`facetrail worker`, the
ingest commands) has a Ctrl-C arriving while its main thread holds a database session raised when
that session closes, a few milliseconds later. Python's own handler raises KeyboardInterrupt
wherever the main thread is, SQLAlchemy's commit and close included, which left a failed close
(AssertionError) instead of the interrupt, and the files a worker held still leased."""

from __future__ import annotations

import signal
import threading


class _State:
    depth = 0  # sessions open in the main thread
    pending = False  # a Ctrl-C arrived while one was open


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_sigint(signum, frame) -> None:
    if _state.depth:
        _state.pending = True
        return
    raise KeyboardInterrupt


def defer_while_in_session() -> None:
    """From now on (this process), hold a Ctrl-C back while the main thread holds a session."""
    if _main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def session_opened() -> None:
    if _main_thread():
        _state.depth += 1


def session_closed() -> None:
    """Raises the Ctrl-C held back, once the last session of the main thread is closed."""
    if not _main_thread():
        return
    _state.depth -= 1
    if _state.depth == 0 and _state.pending:
        _state.pending = False
        raise KeyboardInterrupt
