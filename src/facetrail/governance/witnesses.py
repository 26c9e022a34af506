"""Witnesses: places outside the database that keep a copy of every checkpoint.

Each configured witness (FACETRAIL_AUDIT_WITNESSES) is owed every checkpoint; a delivery row
says whether it arrived. One that fails is tried again with the next checkpoint and by the
server every few minutes, and `facetrail audit status` reports it: never silently skipped.

- `file:PATH`: the note appended to a file (fsync'd); put it on another disk, an append-only
  (chattr +a) file, or a mount the database administrator cannot write.
- `dir:PATH`: one file per checkpoint, created exclusively, never overwritten.
- `syslog:` (the local /dev/log) or `syslog:HOST:PORT` (UDP): one line per checkpoint,
  `facetrail-checkpoint <note as JSON string>`, for a log collector.
- `http://...` / `https://...`: the note POSTed as text/plain; any 2xx answer counts.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..store.models import AuditCheckpoint, WitnessDelivery

TIMEOUT = 10  # seconds an HTTP witness or a syslog send may take
SYSLOG_PRIORITY = 4 * 8 + 5  # facility auth, severity notice


def _to_file(path: Path, note: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(note + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _to_dir(path: Path, note: str, size: int, when: datetime) -> None:
    path.mkdir(parents=True, exist_ok=True)
    name = f"{size:012d}-{when.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.checkpoint"
    fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(note)
        handle.flush()
        os.fsync(handle.fileno())


def _to_syslog(address: str, note: str) -> None:
    """One RFC 3164 line, facility auth, severity notice: to /dev/log, or UDP to HOST:PORT."""
    line = f"<{SYSLOG_PRIORITY}>facetrail: facetrail-checkpoint {json.dumps(note)}".encode()
    if address:
        host, _, port = address.rpartition(":")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(line, (host.strip("[]"), int(port)))
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect("/dev/log")
            sock.send(line)


def _to_http(url: str, note: str) -> None:
    answer = httpx.post(url, content=note.encode(), headers={"Content-Type": "text/plain; charset=utf-8"},
                        timeout=TIMEOUT, follow_redirects=False)
    if not 200 <= answer.status_code < 300:
        raise OSError(f"HTTP {answer.status_code}")


def send(witness: str, checkpoint: AuditCheckpoint) -> None:
    """Deliver one checkpoint to one witness; raises OSError (or httpx's errors) if it did not arrive."""
    if witness.startswith(("http://", "https://")):
        _to_http(witness, checkpoint.note)
    elif witness.startswith("syslog:"):
        _to_syslog(witness[len("syslog:"):], checkpoint.note)
    elif witness.startswith("dir:"):
        _to_dir(Path(witness[len("dir:"):]), checkpoint.note, checkpoint.size, checkpoint.created_at)
    else:
        _to_file(Path(witness.removeprefix("file:")), checkpoint.note)


def owe(session: Session, settings: Settings, checkpoint: AuditCheckpoint) -> None:
    """Record that every configured witness is owed this checkpoint (in the checkpoint's transaction)."""
    for witness in settings.audit_witnesses:
        session.add(WitnessDelivery(checkpoint_id=checkpoint.id, witness=witness, attempts=0))


def deliver_pending(session: Session) -> list[WitnessDelivery]:
    """Try every undelivered checkpoint, oldest first; returns the deliveries still failing.
    The caller commits (each attempt is counted, its error kept for `audit status`)."""
    failing = []
    query = (select(WitnessDelivery, AuditCheckpoint).join(AuditCheckpoint)
             .where(WitnessDelivery.delivered_at.is_(None)).order_by(WitnessDelivery.id))
    for delivery, checkpoint in session.execute(query).all():
        delivery.attempts += 1
        try:
            send(delivery.witness, checkpoint)
        except (OSError, httpx.HTTPError, ValueError) as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            failing.append(delivery)
        else:
            delivery.delivered_at, delivery.last_error = datetime.now(UTC), None
    return failing


@dataclass(frozen=True)
class WitnessState:
    witness: str
    last_delivered: int | None  # tree size of the newest checkpoint it holds
    pending: int  # checkpoints owed and not yet delivered
    last_error: str | None


def states(session: Session, settings: Settings) -> list[WitnessState]:
    """Each configured witness (and any no longer configured that is still owed something)."""
    names = list(dict.fromkeys([*settings.audit_witnesses, *session.scalars(
        select(WitnessDelivery.witness).where(WitnessDelivery.delivered_at.is_(None)).distinct())]))
    found = []
    for name in names:
        delivered = session.scalar(select(func.max(AuditCheckpoint.size)).join(WitnessDelivery).where(
            WitnessDelivery.witness == name, WitnessDelivery.delivered_at.is_not(None)))
        pending = session.scalar(select(func.count()).select_from(WitnessDelivery).where(
            WitnessDelivery.witness == name, WitnessDelivery.delivered_at.is_(None)))
        error = session.scalar(select(WitnessDelivery.last_error).where(
            WitnessDelivery.witness == name, WitnessDelivery.last_error.is_not(None))
            .order_by(WitnessDelivery.id.desc()).limit(1))
        found.append(WitnessState(name, delivered, pending, error if pending else None))
    return found
