"""Database tables. The database is the source of truth; the vector index is derived from `faces`.

Changing a table here needs an Alembic migration in `store/migrations/versions/`
(tests compare the migrated schema with these models).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UtcDateTime


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One distinct image (by sha256), wherever it was found."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    copy_hash: Mapped[int | None] = mapped_column(BigInteger)  # perceptual hash, see copies.py
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)

    faces: Mapped[list[Face]] = relationship(back_populates="image", order_by="Face.idx")
    locations: Mapped[list[Location]] = relationship(back_populates="image", order_by="Location.id")


class Source(Base):
    """A declared source: nothing is fetched or indexed outside a source's scope.

    kind: site (crawled), folder, urls (a URL list), warc (web archives). `scope` holds, per kind,
    {"hosts": [...], "prefixes": [...], "start_urls": [...]} or {"paths": [...]}; `options` the
    crawl limits. `legal_basis` is required: why this source may be indexed at all.
    """

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    scope: Mapped[dict] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)
    legal_basis: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # active, suspended
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Location(Base):
    """A place a source's file was found (a path or an image URL), with what became of it.

    `image_id` is null when the file could not be used; `error` then says why.
    `size` and `mtime_ns` let a rerun skip files that have not changed; `status` is the HTTP
    status of an image URL; `gone` is set when a re-fetch no longer finds the image there.
    For web archives first/last seen are capture dates.
    """

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("source_id", "location"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    location: Mapped[str] = mapped_column(String(2048))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)

    image: Mapped[Image | None] = relationship(back_populates="locations")
    source: Mapped[Source] = relationship()


class Appearance(Base):
    """An image shown on a web page (crawled or archived): the page, its title and the image URL.

    The image itself is the `Location` of the same source whose location is `image_url`.
    `key` = sha256(page_url + NUL + image_url) keeps (page, image) pairs unique within a source
    (two long URLs would not fit a PostgreSQL index entry). `gone` is set when the page was
    fetched again and no longer shows the image, or no longer exists.
    """

    __tablename__ = "appearances"
    __table_args__ = (
        UniqueConstraint("source_id", "key"),
        Index("ix_appearances_source_image_url", "source_id", "image_url"),
        Index("ix_appearances_source_page_url", "source_id", "page_url"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    page_url: Mapped[str] = mapped_column(String(2048))
    canonical_url: Mapped[str | None] = mapped_column(String(2048))
    page_title: Mapped[str] = mapped_column(Text)
    image_url: Mapped[str] = mapped_column(String(2048))
    alt: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)  # of the page
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)


class FetchValidator(Base):
    """What an image URL of a source was last answered with (`ETag`, `Last-Modified`), so that a
    re-crawl asks for it conditionally and an unchanged image is not downloaded again.
    `key` = sha256(url), as URLs may be too long for a PostgreSQL index entry."""

    __tablename__ = "fetch_validators"
    __table_args__ = (UniqueConstraint("source_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Job(Base):
    """A file waiting to be ingested by `facetrail worker` (the ingest queue).

    Workers claim jobs with a lease (PostgreSQL: FOR UPDATE SKIP LOCKED); a job whose worker died
    is claimed again once its lease has run out. status: queued, running, done, failed.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("source_id", "location"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    location: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ReembedJob(Base):
    """A queued `facetrail reembed --background`: one model switch, run by one `facetrail worker` at a
    time under a lease (a dead worker's job is claimed again once its lease has run out). The
    descriptors it made are in `face_vectors` (a rerun resumes from them); `described`/`total` is its
    progress. status: queued, running, done, cancelled, failed. `actor`: who queued it (the switch
    is recorded in their name)."""

    __tablename__ = "reembed_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[dict] = mapped_column(JSON)
    batch: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    described: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Face(Base):
    """A face in an image: box, landmarks, detector score and its descriptor."""

    __tablename__ = "faces"
    __table_args__ = (UniqueConstraint("image_id", "idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    left: Mapped[int] = mapped_column(Integer)
    top: Mapped[int] = mapped_column(Integer)
    right: Mapped[int] = mapped_column(Integer)
    bottom: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(32))
    landmarks: Mapped[list] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(64), index=True)  # the face model (faces/registry.py)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    image: Mapped[Image] = relationship(back_populates="faces")

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


class FaceVector(Base):
    """A face's descriptor by another model than the active one, made by `facetrail reembed`
    (from the stored face crop) until the switch moves them into `faces` in one transaction.
    `embedding` None: that model finds no face in the crop."""

    __tablename__ = "face_vectors"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class AuditEntry(Base):
    """Append-only, hash-chained record of every search and other accountable action.

    hash = sha256(prev_hash + canonical JSON of the entry's fields); see governance/audit.py.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_actor_action_created", "actor", "action", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)  # the chain cannot fork
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditLeaf(Base):
    """The audit log's Merkle tree (RFC 9162): entry `entry_id` is leaf `position` (0, 1, ...),
    its hash SHA-256(0x00 || entry); see governance/merkle.py and governance/audittree.py."""

    __tablename__ = "audit_leaves"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(Integer, unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class AuditNode(Base):
    """A perfect subtree of the audit Merkle tree: 2**level leaves from position * 2**level (level >= 1)."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed checkpoint (tree size, root, time) as a signed note; copies go to the witnesses,
    which are what a verifier trusts (this row is a convenience, as editable as the database)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    note: Mapped[str] = mapped_column(Text)


class WitnessDelivery(Base):
    """A checkpoint owed to a witness: delivered_at is set once it arrived; until then it is retried."""

    __tablename__ = "audit_witness_deliveries"
    __table_args__ = (UniqueConstraint("checkpoint_id", "witness"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("audit_checkpoints.id"))
    witness: Mapped[str] = mapped_column(String(1000))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who may use facetrail, with one role (see governance/roles.py)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiToken(Base):
    """A bearer token for the API or the CLI. Only its sha256 is stored; it is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship()


class OsLogin(Base):
    """An operating-system login bound by an admin to an account: that login may act as the account
    from the command line (`--as NAME`) without a password or token. A login is bound to one account
    at most, so one person cannot request and approve the same search."""

    __tablename__ = "os_logins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))

    user: Mapped[User] = relationship()


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its sha256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship()


class OptOut(Base):
    """A person's request to be left out: only the descriptors of their face (one per photo,
    1-10, concatenated float32 rows) are kept, never the photos. `embedding`: those of the model
    in use when it was recorded (`model`); every model's are in `opt_out_vectors`, which the
    filters read."""

    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    contact: Mapped[str | None] = mapped_column(String(320))
    faces_removed: Mapped[int] = mapped_column(Integer, default=0)  # no longer written: see OptOutDay
    photos: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # descriptors in `embedding`
    model: Mapped[str | None] = mapped_column(String(64))  # the face model that made them
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # matching faces removed (None: pending)


class OptOutVector(Base):
    """An opt-out's descriptors by one face model (concatenated float32 rows, one per photo in which
    that model found a face), made from the photos when the opt-out was recorded, by every
    registered model: the filters read the active model's, so a model switch keeps the opt-out."""

    __tablename__ = "opt_out_vectors"

    opt_out_id: Mapped[int] = mapped_column(ForeignKey("opt_outs.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    photos: Mapped[int] = mapped_column(Integer)  # rows in `embedding`


class OptOutDay(Base):
    """Opt-out totals of one day (UTC, "YYYY-MM-DD"): the only counts kept, so that no count
    tells whether one person was in the index (governance/optout.py)."""

    __tablename__ = "opt_out_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    opt_outs: Mapped[int] = mapped_column(Integer, default=0)
    faces_removed: Mapped[int] = mapped_column(Integer, default=0)
    faces_hidden: Mapped[int] = mapped_column(Integer, default=0)


class Confirmation(Base):
    """A person's judgement that a search result shows the person searched for, in a case.
    A match is "verified" once two different users have confirmed it."""

    __tablename__ = "confirmations"
    __table_args__ = (UniqueConstraint("case_ref", "face_id", "username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(200), index=True)
    face_id: Mapped[int] = mapped_column(Integer)  # no foreign key: the record outlives an opted-out face
    search_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"))  # the search that showed the face
    username: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Approval(Base):
    """A search under an approval policy: reviewed after the fact (review, urgent) or held
    until a supervisor decides (prior). For prior searches only the query face's descriptor
    is held while waiting, and deleted at the decision."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"), unique=True)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    policy: Mapped[str] = mapped_column(String(16))  # review, prior, urgent
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending, approved, denied
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    held_embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    results: Mapped[list | None] = mapped_column(JSON)  # [[face_id, distance], ...] once a prior search runs
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # why it is here, e.g. a repeat-subject hold


class QueryEmbedding(Base):
    """The descriptor of a searched face, kept only for the repeat-subject window (then deleted
    by `facetrail maintenance`), to notice one user searching the same person again and again."""

    __tablename__ = "query_embeddings"
    __table_args__ = (Index("ix_query_embeddings_user_created", "username", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    case_ref: Mapped[str] = mapped_column(String(200))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str] = mapped_column(String(64))  # the face model that made it (only compared within one)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Case(Base):
    """A case searches are made under: its authorisation, purpose, members and expiry
    (governance/cases.py). `status`: open, closed, or incomplete (made from free-text references
    of earlier searches, to be completed by a supervisor)."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(64))
    authority: Mapped[str | None] = mapped_column(String(255))
    authorisation_ref: Mapped[str | None] = mapped_column(String(255))
    authorised_on: Mapped[date | None] = mapped_column(Date)
    urgent_due: Mapped[datetime | None] = mapped_column(UtcDateTime)  # urgent: authorisation due by then
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(255))


class CaseMember(Base):
    """A user who may search under a case."""

    __tablename__ = "case_members"
    __table_args__ = (UniqueConstraint("case_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime)
    added_by: Mapped[str] = mapped_column(String(255))


class Watch(Base):
    """A standing search bound to a case (governance/watches.py): the query template (descriptors of
    1-10 photos, concatenated float32 rows, by the model in use when requested, `model`; every
    model's are in `watch_vectors`, which the checker reads; never the photos), who asked and who
    approved it, until when, and who is notified. `status`: requested, approved, stopped."""

    __tablename__ = "watches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    days: Mapped[int] = mapped_column(Integer)  # asked for (1-30); counted from the approval
    template: Mapped[bytes] = mapped_column(LargeBinary)
    photos: Mapped[int] = mapped_column(Integer)  # descriptors in `template`
    photo_sha256: Mapped[list] = mapped_column(JSON)  # of the photos, for the record
    model: Mapped[str] = mapped_column(String(64))  # the face model that made the descriptors
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stopped_by: Mapped[str | None] = mapped_column(String(64))
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # checkers reload on a change

    owner: Mapped[User] = relationship()
    case: Mapped[Case] = relationship()


class WatchVector(Base):
    """A watch's template by one face model (concatenated float32 rows, one per photo in which that
    model found a face), made from the photos when the watch was requested, by every registered
    model: the checker reads the active model's, so a watch keeps firing after a model switch."""

    __tablename__ = "watch_vectors"

    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    photos: Mapped[int] = mapped_column(Integer)  # rows in `embedding`


class WatchHit(Base):
    """A new face that matched a watch: the search it was recorded as (None while withheld by the
    owner's rate limit), and how its notifications went."""

    __tablename__ = "watch_hits"
    __table_args__ = (UniqueConstraint("watch_id", "face_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id"), index=True)
    face_id: Mapped[int] = mapped_column(Integer)  # no foreign key: the record outlives an opted-out face
    image_id: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), index=True)  # shown, withheld
    search_id: Mapped[int | None] = mapped_column(ForeignKey("audit_log.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    shown_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivery: Mapped[dict] = mapped_column(JSON)  # channel -> {state: pending|sent|failed, attempts, error}
