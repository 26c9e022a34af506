"""The server's checkpointer: at start it checks the append-only triggers and the signing key;
then it signs a checkpoint every FACETRAIL_AUDIT_CHECKPOINT_MINUTES when the log grew, retries
the witnesses that have not got theirs, and signs a last one at shutdown."""

from __future__ import annotations

import sys
import threading

from ..config import Settings
from ..store import Database
from . import audit, auditguards, checkpoints, witnesses


class Checkpointer:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.key = None
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> list[str]:
        """Check the guards and the key, catch the tree up, start the periodic thread; returns
        warnings for the operator (missing triggers, a key made or missing)."""
        warnings = []
        with self.db.session() as session, session.begin():
            audit.catch_up(session)
            unguarded = auditguards.missing(session)
            if unguarded:
                warnings.append(auditguards.warning(unguarded))
            warnings += self._load_key(session)
        self.thread = threading.Thread(target=self._run, daemon=True, name="facetrail-audit-checkpoints")
        self.thread.start()
        return warnings

    def _load_key(self, session) -> list[str]:
        try:
            self.key = checkpoints.load_key(self.settings)
            return []
        except checkpoints.KeyMissing as exc:
            if checkpoints.latest(session) is not None or self.settings.audit_key:
                return [f"no audit checkpoints will be signed: {exc}"]  # never a new key for an old log
            self.key = checkpoints.create_key(self.settings.audit_key_path)
            return [f"audit signing key created at {self.settings.audit_key_path} (0600); its verifier key "
                    f"(give it to whoever checks the log): {checkpoints.Verifier.of(self.settings, self.key).text()}"]

    def tick(self, force: bool = False) -> None:
        """A checkpoint if the log grew (or `force`), then every witness still owed one."""
        if self.key is not None:
            with self.db.session() as session, session.begin():
                if force or checkpoints.due(session):
                    checkpoints.make(session, self.settings, self.key)
        with self.db.session() as session, session.begin():
            for delivery in witnesses.deliver_pending(session):
                print(f"facetrail: warning: audit witness {delivery.witness} not reached: {delivery.last_error} "
                      f"(attempt {delivery.attempts}; retried)", file=sys.stderr)

    def _run(self) -> None:
        while not self.stop_event.wait(self.settings.audit_checkpoint_minutes * 60):
            self._safely()

    def _safely(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive a bad minute; said loudly
            print(f"facetrail: warning: audit checkpoint failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def stop(self) -> None:
        """Stop the thread and sign the last checkpoint (if the log grew)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self._safely()
