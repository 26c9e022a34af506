"""Signed checkpoints of the audit log, and checking the log against them.

A checkpoint says "the log had SIZE entries and this tree head at TIME", signed with an Ed25519
key that lives outside the database (a 0600 file made by `facetrail init`, or FACETRAIL_AUDIT_KEY).
It is a C2SP signed note (the transparency-dev tlog-checkpoint form, RFC 9162 tree heads):

    facetrail/audit/1a2b3c4d5e6f7a8b      origin: the log's name
    1234                                   tree size
    <base64 tree head>
    time 2026-11-30T11:22:33.123456Z       an extension line

    — facetrail/audit/1a2b3c4d5e6f7a8b <base64(key id (4 bytes) || Ed25519 signature of the body)>

Witnesses (witnesses.py) keep copies the database administrator cannot change; `verify_log`
checks the log against any of them: signature, the tree head recomputed from the entries at the
checkpoint's size, and an RFC 9162 consistency proof from it to the current tree.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import Refused
from ..store.models import AuditCheckpoint
from . import audit, audittree, merkle

DASH = "\u2014"  # signed notes' signature lines start with an em dash
log = logging.getLogger("facetrail.audit")


class KeyMissing(Refused):
    code = "audit_key_missing"


# --- the signing key ---------------------------------------------------------------------------


def create_key(path: Path) -> Ed25519PrivateKey:
    """A new key in a new 0600 file (never over an existing one)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def _parse_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyMissing("the audit signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def load_key(settings: Settings) -> Ed25519PrivateKey:
    """The signing key: FACETRAIL_AUDIT_KEY, else the key file; refused if neither."""
    if settings.audit_key:
        return _parse_key(settings.audit_key)
    path = settings.audit_key_path
    if not path.is_file():
        raise KeyMissing(f"no audit signing key at {path}: run `facetrail init` (or `facetrail audit key "
                         "--create`) or set FACETRAIL_AUDIT_KEY")
    return _parse_key(path.read_text())


def ensure_key(settings: Settings) -> tuple[Ed25519PrivateKey, bool]:
    """The signing key, made now if there is none yet (init, first server start); (key, made)."""
    try:
        return load_key(settings), False
    except KeyMissing:
        if settings.audit_key:
            raise
        return create_key(settings.audit_key_path), True


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def origin(settings: Settings, key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return settings.audit_origin or f"facetrail/audit/{hashlib.sha256(public_bytes(key)).hexdigest()[:16]}"


def key_id(name: str, public: bytes) -> bytes:
    """The signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The public key as a signed-note verifier key: NAME+KEYID+base64(0x01 || key); what to hand out."""
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


@dataclass(frozen=True)
class Verifier:
    name: str
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        name, _, encoded = text.strip().split("+", 2)  # a name holds no "+", base64 may
        raw = base64.b64decode(encoded)
        if raw[:1] != b"\x01" or len(raw) != 33:
            raise ValueError("not an Ed25519 signed-note verifier key")
        return cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))

    @classmethod
    def of(cls, settings: Settings, key: Ed25519PrivateKey) -> Verifier:
        return cls(origin(settings, key), key.public_key())

    def text(self) -> str:
        return verifier_key(self.name, public_bytes(self.public))


# --- checkpoints as signed notes ---------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: datetime
    note: str  # the whole signed note, as written and witnessed

    @property
    def body(self) -> str:
        return self.note.split("\n\n", 1)[0] + "\n"


def body_text(name: str, size: int, root: bytes, time: datetime) -> str:
    stamp = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{name}\n{size}\n{base64.b64encode(root).decode()}\ntime {stamp}\n"


def sign(key: Ed25519PrivateKey, name: str, size: int, root: bytes, time: datetime) -> Checkpoint:
    body = body_text(name, size, root, time)
    signature = key_id(name, public_bytes(key)) + key.sign(body.encode())
    note = f"{body}\n{DASH} {name} {base64.b64encode(signature).decode()}\n"
    return Checkpoint(name, size, root, time, note)


def parse(text: str) -> list[Checkpoint]:
    """Every checkpoint in a text: one note, or a witness file of many (each ends after its
    signature lines). Raises ValueError on anything else."""
    found, lines = [], text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i]:
            i += 1
        body = lines[start:i]
        i += 1
        signatures = []
        while i < len(lines) and lines[i].startswith(DASH + " "):
            signatures.append(lines[i])
            i += 1
        if len(body) < 4 or not signatures or not body[3].startswith("time "):
            raise ValueError(f"not a facetrail checkpoint (line {start + 1})")
        note = "\n".join(body) + "\n\n" + "\n".join(signatures) + "\n"
        stamp = datetime.strptime(body[3][5:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        found.append(Checkpoint(body[0], int(body[1]), base64.b64decode(body[2], validate=True), stamp, note))
    return found


def signed_by(checkpoint: Checkpoint, verifier: Verifier) -> bool:
    """Does one of the note's signature lines carry a valid signature of `verifier`'s key?"""
    if checkpoint.origin != verifier.name:
        return False
    wanted = key_id(verifier.name, public_bytes(verifier.public))
    for line in checkpoint.note.split("\n\n", 1)[1].splitlines():
        _, name, encoded = line.split(" ", 2)
        raw = base64.b64decode(encoded)
        if name != verifier.name or raw[:4] != wanted:
            continue
        try:
            verifier.public.verify(raw[4:], checkpoint.body.encode())
            return True
        except InvalidSignature:
            return False
    return False


# --- writing checkpoints -----------------------------------------------------------------------


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))


def make(session: Session, settings: Settings, key: Ed25519PrivateKey) -> AuditCheckpoint:
    """Sign the tree as it is now and keep the note (the caller commits, then delivers it to the
    witnesses: witnesses.deliver_pending)."""
    from . import witnesses

    audit.catch_up(session)
    size = audittree.size(session)
    checkpoint = sign(key, origin(settings, key), size, audittree.root(session, size), datetime.now(UTC))
    if settings.audit_tsa_url:
        checkpoint = _timestamped(checkpoint, settings.audit_tsa_url)
    row = AuditCheckpoint(size=size, root=checkpoint.root.hex(), created_at=checkpoint.time, note=checkpoint.note)
    session.add(row)
    session.flush()
    witnesses.owe(session, settings, row)
    return row


def _timestamped(checkpoint: Checkpoint, url: str) -> Checkpoint:
    """The checkpoint with the TSA's token as one more signature line; without, said loudly, if
    the TSA fails (a checkpoint is never skipped for want of a timestamp)."""
    from . import timestamps

    try:
        token = timestamps.fetch(url, checkpoint.body.encode())
    except timestamps.TimestampError as exc:
        log.warning("audit checkpoint of %d entries signed without a trusted timestamp: %s", checkpoint.size, exc)
        return checkpoint
    note = checkpoint.note + timestamps.signature_line(token) + "\n"
    return Checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root, checkpoint.time, note)


def due(session: Session) -> bool:
    """Has the log grown since the latest checkpoint (or is there none)?"""
    last = latest(session)
    return last is None or audittree.size(session) != last.size


# --- checking the log against checkpoints ------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    checkpoint: Checkpoint
    problem: str | None  # None: the log is consistent with this checkpoint


def verify_log(session: Session, checkpoints: list[Checkpoint], verifier: Verifier) -> tuple[audit.Walk, list[Finding]]:
    """The log walked once (chain, leaves, nodes), and each checkpoint checked against it: its
    signature, the tree head of the entries at its size, and a consistency proof to now."""
    result = audit.walk(session, {c.size for c in checkpoints})
    return result, [Finding(c, _problem(session, c, verifier, result)) for c in checkpoints]


def _problem(session: Session, checkpoint: Checkpoint, verifier: Verifier, result: audit.Walk) -> str | None:
    if not signed_by(checkpoint, verifier):
        return f"the signature does not verify with the key {verifier.name} (forged or another key)"
    if checkpoint.size > result.count:
        return (f"the log holds {result.count} verifiable entries, the checkpoint {checkpoint.size} "
                "(entries deleted: truncated, wiped or rebuilt)")
    if result.roots.get(checkpoint.size) != checkpoint.root:
        return "the entries up to the checkpoint's size do not give its tree head (rewritten or rebuilt)"
    try:
        proof = audittree.consistency_proof(session, checkpoint.size, result.count)
    except audittree.MissingNode as exc:
        return f"no consistency proof: {exc}"
    if not merkle.verify_consistency(checkpoint.size, result.count, proof, checkpoint.root, result.head):
        return "the consistency proof from the checkpoint to the current tree does not verify"
    return None


def timestamp(checkpoint: Checkpoint, roots_pem: bytes) -> datetime | None:
    """When a trusted TSA (chaining to `roots_pem`) says the checkpoint existed; None if it carries
    no timestamp; raises timestamps.TimestampError if its timestamp does not verify."""
    from . import timestamps

    token = timestamps.token_in(checkpoint.note)
    return None if token is None else timestamps.verify(token, checkpoint.body.encode(), roots_pem)


# --- inclusion proofs --------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    entry: dict  # as exported (audit.as_record)
    index: int
    leaf: bytes
    proof: list[bytes]
    checkpoint: str  # the signed note it is proven against

    def as_json(self) -> dict:
        return {"entry": self.entry, "leaf_index": self.index, "leaf_hash": self.leaf.hex(),
                "proof": [p.hex() for p in self.proof], "checkpoint": self.checkpoint}


def prove(session: Session, entry_id: int) -> InclusionProof:
    """An inclusion proof of one entry against the latest checkpoint that covers it."""
    from ..store import AuditEntry

    entry = session.get(AuditEntry, entry_id)
    index = audittree.position_of(session, entry_id)
    if entry is None or index is None:
        raise Refused(f"no audit entry {entry_id} in the tree", code="not_found")
    last = latest(session)
    if last is None or last.size <= index:
        raise Refused(f"entry {entry_id} is newer than the latest checkpoint: write one first "
                      "(`facetrail audit checkpoint`)", code="not_checkpointed")
    proof = audittree.inclusion_proof(session, index, last.size)
    return InclusionProof(audit.as_record(entry), index, audit.leaf(entry), proof, last.note)


def consistency(session: Session, old: Checkpoint) -> dict:
    """A consistency proof from a checkpoint someone kept to the latest one: what an outsider
    holding both checks to know the log only grew in between (docs/audit-verification.md)."""
    last = latest(session)
    if last is None or last.size < old.size:
        raise Refused(f"no checkpoint of at least {old.size} entries to prove against", code="not_checkpointed")
    proof = audittree.consistency_proof(session, old.size, last.size)
    return {"old": old.note, "new": last.note, "proof": [p.hex() for p in proof]}
