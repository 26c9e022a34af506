"""Watches: standing searches bound to an open case, that report new appearances (issue 18, 4-6).

A watch holds the query template (the descriptors of 1-10 photos of one person, computed as a
multi-photo search computes them: each photo's largest face; never the photos), made by every
registered face model when it is requested (`WatchVector`, one set per model: faces/templates.py),
so that it keeps firing after a model switch (`facetrail reembed`); the case, its
owner and who is notified (the owner's inbox always; optionally a webhook and an email address),
and an expiry: at most MAX_DAYS days from its approval, renewed only by a supervisor's new
approval. An investigator or supervisor who is a member of an open case requests it; another
supervisor approves it. Requests, approvals, renewals and stops are in the audit log
(`watch.request`, `watch.approve`, `watch.renew`, `watch.stop`).

A watch is active while it is approved, unexpired, not stopped, and its case is open with its
owner still a member (`cases.for_search`, the rule every search passes). Every ingest and crawl
checks the faces it has just stored against the active watches (`WatchChecker`, called once per
stored batch by ingest/pipeline.py): one matrix product against an in-memory matrix of every
active watch's descriptors by the model in use, reloaded when a watch changes. A face within the active model's
match threshold of any descriptor of a watch is a hit, unless the face or the watch's template
is within an opt-out's blocking radius (as a search returns nothing for an opted-out query face
and never an opted-out face; opted-out faces are not stored at all).

A hit is recorded as the search it is: an audit entry of action `search`, `mode: "watch"`,
under the watch's case and purpose, by the watch's owner (`via: "watch"`), with the details
every search entry has (query sha256, results, threshold, model...). So rate limits, the
transparency report, the case page and /searches/{id} (with its crop and thumbnail routes)
count and show it like any search. A hit counts against its owner's search limits: over a
limit, it is kept as `withheld` (nothing recorded as seen, nothing notified) and released at
the first check or inbox reading after the window has room again.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import Refused
from ..faces.registry import calibration
from ..faces.templates import describe_with_each_model
from ..faces.tail import distance_at_pair_rate
from ..images.decode import DecodeError
from ..store import AuditEntry, Database, User
from ..store.models import Case, CaseMember, Watch, WatchHit, WatchVector
from . import art12, audit, cases, notify
from . import limits as rate_limits
from .actors import Actor
from .optout import OptOutCache, radii
from .roles import can

MAX_DAYS = 30
MAX_PHOTOS = 10
REQUESTED, APPROVED, STOPPED = "requested", "approved", "stopped"
SHOWN, WITHHELD = "shown", "withheld"
INBOX_SIZE = 100


class WatchRefused(Refused):
    """A watch operation the rules do not allow."""

    code = "watch_refused"


class WatchNotFound(Refused):
    code = "not_found"


def now() -> datetime:
    return datetime.now(UTC)


# The template


def template(photos: list[bytes], faces_in: Callable) -> tuple[np.ndarray, list[str]]:
    """The descriptors of `photos` (each photo's largest face, as a search chooses by default) and
    the photos' sha256; `faces_in(photo) -> (image, faces largest first)` is the searcher's.
    WatchRefused for a photo without a usable face."""
    vectors, shas, _ = _described(photos, faces_in)
    return vectors, shas


def templates_by_model(settings: Settings, photos: list[bytes],
                       faces_in: Callable) -> tuple[dict[str, np.ndarray], list[str]]:
    """As `template`, by every registered model: model -> descriptors (the searcher's model, named
    by settings.face_model, finds a face in every photo; another model has a row per photo where it
    finds one, none if it finds none), and the photos' sha256."""
    vectors, shas, pixels = _described(photos, faces_in)
    others = describe_with_each_model(settings, pixels, skip={settings.face_model})
    return {**others, settings.face_model: vectors}, shas


def _described(photos: list[bytes], faces_in: Callable) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """The descriptors, sha256 and decoded pixels of `photos` (`template`)."""
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise WatchRefused(f"a watch takes 1 to {MAX_PHOTOS} photos of one person, not {len(photos)}")
    vectors, shas, pixels = [], [], []
    for n, photo in enumerate(photos, 1):
        name = f"photo {n}: " if len(photos) > 1 else ""
        try:
            image, faces = faces_in(photo)
        except DecodeError as exc:
            raise WatchRefused(f"{name}not a usable image: {exc}") from None
        if not faces:
            raise WatchRefused(f"{name}no face found in the photo")
        vectors.append(np.asarray(faces[0].embedding, np.float32))
        shas.append(hashlib.sha256(photo).hexdigest())
        pixels.append(image.pixels)
    return np.stack(vectors), shas, pixels


# Requests, approvals, stops, renewals


def _get(session: Session, watch_id: int) -> Watch:
    watch = session.get(Watch, watch_id) if 0 < watch_id < 2**31 else None
    if watch is None:
        raise WatchNotFound(f"no watch {watch_id}")
    return watch


def _days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise WatchRefused(f"a watch runs 1 to {MAX_DAYS} days; renew it later with a new approval")
    return days


def _details(watch: Watch) -> dict:
    return {"watch_id": watch.id, "case_ref": watch.case.ref, "owner": watch.owner.username,
            "expires_at": watch.expires_at.isoformat(timespec="seconds") if watch.expires_at else None}


def request(session: Session, settings: Settings, actor: Actor, case_ref: str,
            vectors: np.ndarray | dict[str, np.ndarray], photo_sha256: list[str], *, days: int = MAX_DAYS,
            webhook: str | None = None, email: str | None = None) -> Watch:
    """A watch asked for by `actor`, who must be allowed to search under the case now; it does
    nothing until a supervisor approves it. Recorded as `watch.request`. `vectors`: the template
    by the model in use (settings.face_model), or by each model (`templates_by_model`: model -> rows,
    holding the model in use's)."""
    if not actor.can("search"):
        raise WatchRefused(f"the {actor.role} role may not search, so may not watch")
    case = cases.for_search(session, actor, case_ref)
    days = _days(days)
    webhook = notify.check_webhook(webhook, settings) if webhook and webhook.strip() else None
    if email and email.strip():
        if not settings.smtp_host:
            raise WatchRefused("email notifications need an SMTP server (FACETRAIL_SMTP_HOST)")
        email = notify.check_email(email)
    else:
        email = None
    described = vectors if isinstance(vectors, dict) else {settings.face_model: vectors}
    vectors = np.atleast_2d(np.asarray(described[settings.face_model], np.float32))
    owner = session.scalar(select(User).where(User.username == actor.username))
    at = now()
    watch = Watch(case_id=case.id, owner_id=owner.id, status=REQUESTED, days=days, template=vectors.tobytes(),
                  photos=len(vectors), photo_sha256=list(photo_sha256), model=settings.face_model,
                  webhook_url=webhook, email=email, created_at=at, changed_at=at)
    session.add(watch)
    session.flush()
    session.add_all(WatchVector(watch_id=watch.id, model=model, photos=len(rows),
                                embedding=np.asarray(rows, np.float32).tobytes())
                    for model, rows in sorted(described.items()) if len(rows))
    session.flush()
    session.refresh(watch)
    audit.record(session, actor, "watch.request", case.purpose, **_details(watch), days=days, photos=len(vectors),
                 photo_sha256=list(photo_sha256), webhook=webhook, email=email, models=sorted(described))
    return watch


def _supervisor(actor: Actor, watch: Watch, what: str) -> None:
    if not can(actor.role, "approve") or actor.role == "public":
        raise WatchRefused(f"only supervisors {what} watches")
    if watch.owner.username == actor.username:
        raise WatchRefused(f"a watch is approved by another supervisor than the one who asked for it ({what})")


def _case_open(watch: Watch) -> None:
    state = cases.state(watch.case)
    if state != cases.OPEN:
        raise WatchRefused(f"case {watch.case.ref!r} {cases.WHY_NOT[state]}")


def _approved(watch: Watch, actor: Actor, days: int) -> None:
    """Approved by `actor` now, for `days` from now (an approval or a renewal)."""
    at = now()
    watch.status, watch.days, watch.approved_by, watch.approved_at = APPROVED, days, actor.username, at
    watch.expires_at, watch.changed_at = at + timedelta(days=days), at


def approve(session: Session, actor: Actor, watch_id: int) -> Watch:
    """A supervisor approves a requested watch: it runs for its days from now. `watch.approve`."""
    watch = _get(session, watch_id)
    _supervisor(actor, watch, "approve")
    if watch.status != REQUESTED:
        raise WatchRefused(f"watch {watch.id} is {watch.status}, not waiting for approval")
    _case_open(watch)
    _approved(watch, actor, watch.days)
    audit.record(session, actor, "watch.approve", watch.case.purpose, **_details(watch))
    return watch


def renew(session: Session, actor: Actor, watch_id: int, days: int) -> Watch:
    """A supervisor's new approval of an approved watch (expired or not): it runs `days` from now.
    `watch.renew`."""
    watch = _get(session, watch_id)
    _supervisor(actor, watch, "renew")
    if watch.status != APPROVED:
        raise WatchRefused(f"watch {watch.id} is {watch.status}: only an approved watch is renewed")
    _case_open(watch)
    before = watch.expires_at
    _approved(watch, actor, _days(days))
    audit.record(session, actor, "watch.renew", watch.case.purpose, **_details(watch), days=days,
                 expired_at=before.isoformat(timespec="seconds") if before else None)
    return watch


def stop(session: Session, actor: Actor, watch_id: int, reason: str = "") -> Watch:
    """Stop a watch (its owner, or any supervisor; a supervisor's stop of a request refuses it).
    `watch.stop`."""
    watch = _get(session, watch_id)
    if watch.owner.username != actor.username and not (actor.role != "public" and can(actor.role, "approve")):
        if _may_see(session, actor, watch):
            raise WatchRefused("only its owner or a supervisor stops a watch")
        raise WatchNotFound(f"no watch {watch_id}")
    if watch.status == STOPPED:
        raise WatchRefused(f"watch {watch.id} is stopped already")
    at = now()
    watch.status, watch.stopped_by, watch.stopped_at, watch.changed_at = STOPPED, actor.username, at, at
    audit.record(session, actor, "watch.stop", watch.case.purpose, **_details(watch),
                 reason=cases.plain(reason or "", "reason", 1000))
    return watch


# Reading


def state(watch: Watch, at: datetime | None = None) -> str:
    """requested, active, expired, stopped, or `case <state>` when its case is not open."""
    at = at or now()
    if watch.status != APPROVED:
        return watch.status
    if watch.expires_at is None or watch.expires_at <= at:
        return "expired"
    case_state = cases.state(watch.case, at)
    return "active" if case_state == cases.OPEN else f"case {case_state}"


def _sees_all(actor: Actor) -> bool:
    return actor.role != "public" and (can(actor.role, "approve") or can(actor.role, "audit.read"))


def _may_see(session: Session, actor: Actor, watch: Watch) -> bool:
    return _sees_all(actor) or watch.owner.username == actor.username or actor.username in cases.members(
        session, watch.case)


def describe(session: Session, watch: Watch) -> dict:
    iso = lambda t: t.isoformat(timespec="seconds") if t else None  # noqa: E731
    hits = session.execute(select(WatchHit.state, func.count()).where(WatchHit.watch_id == watch.id)
                           .group_by(WatchHit.state)).all()
    models = session.scalars(select(WatchVector.model).where(WatchVector.watch_id == watch.id)
                             .order_by(WatchVector.model)).all()
    return {"id": watch.id, "case_ref": watch.case.ref, "case_id": watch.case_id, "owner": watch.owner.username,
            "state": state(watch), "status": watch.status, "days": watch.days, "photos": watch.photos,
            "model": watch.model, "models": list(models), "webhook": watch.webhook_url, "email": watch.email,
            "created_at": iso(watch.created_at), "approved_by": watch.approved_by,
            "approved_at": iso(watch.approved_at), "expires_at": iso(watch.expires_at),
            "stopped_by": watch.stopped_by, "stopped_at": iso(watch.stopped_at),
            "hits": dict(hits).get(SHOWN, 0), "withheld": dict(hits).get(WITHHELD, 0)}


def show(session: Session, actor: Actor, watch_id: int) -> dict:
    watch = _get(session, watch_id)
    if not _may_see(session, actor, watch):
        raise WatchNotFound(f"no watch {watch_id}")
    shown = describe(session, watch)
    if not _sees_all(actor) and watch.owner.username != actor.username:
        shown["webhook"] = "(set)" if shown["webhook"] else None
        shown["email"] = "(set)" if shown["email"] else None
    return shown


def listing(session: Session, actor: Actor, case_ref: str | None = None) -> list[dict]:
    """Watches newest first (of one case if named): every watch for supervisors, auditors and
    admins; for an investigator, their own and those of the cases they are a member of."""
    query = select(Watch).join(Case, Case.id == Watch.case_id).order_by(Watch.id.desc())
    if case_ref is not None:
        if len(case_ref.strip()) > 100 or "\x00" in case_ref:
            return []  # no case has such a reference
        query = query.where(Case.ref == case_ref.strip())
    if not _sees_all(actor):
        mine = select(CaseMember.case_id).join(User).where(User.username == actor.username)
        owner = select(User.id).where(User.username == actor.username).scalar_subquery()
        query = query.where((Watch.owner_id == owner) | Watch.case_id.in_(mine))
    listed = [describe(session, watch) for watch in session.scalars(query)]
    for watch in listed:  # another member's webhook and address are theirs: only that they are set
        if not _sees_all(actor) and watch["owner"] != actor.username:
            watch["webhook"] = "(set)" if watch["webhook"] else None
            watch["email"] = "(set)" if watch["email"] else None
    return listed


def inbox(session: Session, settings: Settings, actor: Actor) -> list[dict]:
    """The hits of `actor`'s watches, newest first (withheld ones released first if the limits
    now allow): each with its watch, case, the search it was recorded as, face, image, distance
    and how its notifications went. The caller commits (a release writes audit entries)."""
    release(session, settings, actor.username)
    rows = session.execute(
        select(WatchHit, Watch, Case.ref).join(Watch, Watch.id == WatchHit.watch_id)
        .join(Case, Case.id == Watch.case_id).join(User, User.id == Watch.owner_id)
        .where(User.username == actor.username).order_by(WatchHit.id.desc()).limit(INBOX_SIZE)).all()
    return [{"id": hit.id, "watch_id": watch.id, "case_ref": ref, "state": hit.state, "search_id": hit.search_id,
             "face_id": hit.face_id, "image_id": hit.image_id, "distance": round(hit.distance, 6),
             "at": hit.created_at.isoformat(timespec="seconds"), "delivery": hit.delivery}
            for hit, watch, ref in rows]


def totals(session: Session, since: datetime, until: datetime) -> dict:
    """For the transparency report: watches requested, approved (or renewed) and stopped in the
    period, active now, and their hits in the period (shown, and withheld by rate limits)."""
    actions = dict(session.execute(
        select(AuditEntry.action, func.count()).where(AuditEntry.action.like("watch.%"),
                                                     AuditEntry.created_at >= since, AuditEntry.created_at < until)
        .group_by(AuditEntry.action)).all())
    hits = dict(session.execute(select(WatchHit.state, func.count()).where(
        WatchHit.created_at >= since, WatchHit.created_at < until).group_by(WatchHit.state)).all())
    approved = session.scalars(select(Watch).where(Watch.status == APPROVED)).all()
    return {"watches_requested": actions.get("watch.request", 0), "watches_approved": actions.get("watch.approve", 0),
            "watches_renewed": actions.get("watch.renew", 0), "watches_stopped": actions.get("watch.stop", 0),
            "watches_active": sum(1 for w in approved if state(w) == "active"),
            "watch_hits": hits.get(SHOWN, 0), "watch_hits_withheld": hits.get(WITHHELD, 0)}


# Checking new faces


# A watch looks at every face ingested, not at one photo someone chose to search: its threshold
# keeps the chance that a stranger's new face comes this close to any active watch photo at
# WATCH_FPIR (1 ingested face in 1,000), from the model's fitted different-person tail. dlib: 0.57
# for one watch photo, 0.545 for 3, 0.50 for 30, 0.425 for 3,000 (the match threshold 0.6 gave
# ~3.8 false hits per ingested stranger with 1,000 watches of 3 photos: docs/figures.md#watches).
WATCH_FPIR = 1e-3


def threshold(settings: Settings, templates: int = 1) -> float:
    """The largest distance of a hit with `templates` active watch photos: FACETRAIL_WATCH_THRESHOLD,
    else the model's match threshold narrowed to WATCH_FPIR (a model without a fitted tail keeps
    its match threshold)."""
    if settings.watch_threshold:
        return settings.watch_threshold
    calibrated = calibration(settings)
    if calibrated.tail is None:
        return calibrated.match_threshold
    pair_rate = -math.expm1(math.log1p(-WATCH_FPIR) / max(1, templates))
    return min(calibrated.match_threshold, distance_at_pair_rate(pair_rate, calibrated.tail))


def active_photos(session: Session, settings: Settings) -> int:
    """How many watch photos (templates) are active now for the model in use (its descriptors)."""
    return int(session.scalar(select(func.coalesce(func.sum(WatchVector.photos), 0))
                              .join(Watch, Watch.id == WatchVector.watch_id).where(
        Watch.status == APPROVED, Watch.expires_at > now(), WatchVector.model == settings.face_model)))


def owner_actor(watch: Watch) -> Actor:
    return Actor(watch.owner.username, watch.owner.role, "watch", watch.owner_id)


def _limits(settings: Settings, actor: Actor) -> dict[str, int]:
    return settings.user_search_limits.get(actor.username) or settings.search_limits.get(actor.role) or {}


def _record_search(session: Session, settings: Settings, watch: Watch, hit: WatchHit,
                   use: art12.Use | None = None, checked: int | None = None) -> AuditEntry:
    """The hit's audit entry: a search by the watch's owner under its case, as search entries are.
    Art. 12(3): the period of the use is the check of the batch (`use`), the reference database
    the faces it checked (`checked` of them; unknown for a hit released later)."""
    actor = owner_actor(watch)
    use = use or art12.Use()
    shas = watch.photo_sha256
    return audit.record(session, actor, "search", watch.case.purpose, **{
        "mode": "watch", "watch_id": watch.id, "hit_id": hit.id,
        "role": actor.role, "justification": f"watch {watch.id}, approved by {watch.approved_by}",
        "case_ref": watch.case.ref, "query_sha256": shas[0] if shas else None,
        "query_photos": [{"sha256": sha, "faces_found": 1, "selected_face": 0} for sha in shas],
        "faces_found": 1, "selected_face": 0, "top_k": 1,
        "threshold": threshold(settings, active_photos(session, settings)),
        "model": settings.face_model, "use": use.period(),
        "index": {"kind": "watch: newly stored faces", "size": checked, "model": settings.face_model,
                  "newest_face": hit.face_id},
        "results": [[hit.face_id, round(hit.distance, 6)]], "result_count": 1, "blocked_by_opt_out": False,
        "approval_policy": "watch", "approved_by": watch.approved_by, "hold": None, "outcome": "ok",
    })


def _show(session: Session, settings: Settings, watch: Watch, hit: WatchHit, use: art12.Use | None = None,
          checked: int | None = None) -> bool:
    """Record the hit as its owner's search if their limits allow; else leave it withheld."""
    try:
        rate_limits.check(session, watch.owner.username, _limits(settings, owner_actor(watch)))
    except rate_limits.RateLimited:
        hit.state = WITHHELD
        return False
    hit.search_id = _record_search(session, settings, watch, hit, use, checked).id
    hit.state, hit.shown_at = SHOWN, now()
    hit.delivery = {**({"webhook": {"state": "pending"}} if watch.webhook_url else {}),
                    **({"email": {"state": "pending"}} if watch.email else {})}
    return True


def release(session: Session, settings: Settings, username: str | None = None) -> list[int]:
    """Withheld hits (of one owner, or all) recorded now, oldest first, while the limits allow,
    if their watch is still active. Returns the ids of the hits released."""
    query = (select(WatchHit, Watch).join(Watch, Watch.id == WatchHit.watch_id).where(WatchHit.state == WITHHELD)
             .order_by(WatchHit.id))
    if username is not None:
        query = query.where(Watch.owner_id == select(User.id).where(User.username == username).scalar_subquery())
    released, full = [], set()
    for hit, watch in session.execute(query).all():
        if watch.owner_id in full or not _active(session, watch):
            continue
        if _show(session, settings, watch, hit):
            released.append(hit.id)
        else:
            full.add(watch.owner_id)
    return released


def _active(session: Session, watch: Watch) -> bool:
    """Approved, unexpired, its case open and its owner still allowed to search under it."""
    if watch.status != APPROVED or watch.expires_at is None or watch.expires_at <= now():
        return False
    if watch.owner.disabled or not can(watch.owner.role, "search"):
        return False  # an owner disabled, or no longer in a role that searches
    try:
        cases.for_search(session, owner_actor(watch), watch.case.ref)
    except Refused:
        return False
    return True


@dataclass
class _Templates:
    """The descriptors by the active model of every approved, unexpired watch, in one matrix."""

    watch_ids: np.ndarray  # per row of `vectors`: its watch
    vectors: np.ndarray  # rows x dim float32
    norms: np.ndarray  # |row|^2


class WatchChecker:
    """Checks newly stored faces against the active watches (one per ingesting process)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.threshold = threshold(settings)
        self.opt_outs = OptOutCache(radii(settings).block, settings.face_model)
        self._held: tuple[tuple, _Templates] | None = None

    def templates(self, session: Session) -> _Templates:
        """The matrix, loaded again when a watch changed (their count or newest change)."""
        key = tuple(session.execute(select(func.count(Watch.id), func.max(Watch.changed_at))).one())
        held = self._held
        if held is None or held[0] != key:
            rows = session.execute(
                select(Watch.id, WatchVector.embedding, WatchVector.photos)
                .join(WatchVector, WatchVector.watch_id == Watch.id)
                .where(Watch.status == APPROVED, Watch.expires_at > now(),
                       WatchVector.model == self.settings.face_model).order_by(Watch.id)).all()
            blocks = [np.frombuffer(blob, np.float32).reshape(photos, -1) for _, blob, photos in rows]
            vectors = np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)
            ids = np.concatenate([np.full(len(b), watch_id, np.int64) for (watch_id, _, _), b in zip(rows, blocks)]) \
                if blocks else np.zeros(0, np.int64)
            held = (key, _Templates(ids, vectors, (vectors ** 2).sum(1)))
            self._held = held
            self.threshold = threshold(self.settings, len(vectors))
        return held[1]

    def matches(self, templates: _Templates, vectors: np.ndarray) -> list[tuple[int, int, float]]:
        """(row of `vectors`, watch id, distance to the watch's nearest descriptor) within the threshold."""
        if not len(templates.vectors) or not len(vectors) or vectors.shape[1] != templates.vectors.shape[1]:
            return []
        squared = (vectors ** 2).sum(1)[:, None] + templates.norms[None, :] - 2 * vectors @ templates.vectors.T
        rows, cols = np.nonzero(squared <= self.threshold ** 2)
        best: dict[tuple[int, int], float] = {}
        for row, col in zip(rows.tolist(), cols.tolist()):
            key = (row, int(templates.watch_ids[col]))
            distance = float(np.sqrt(max(0.0, squared[row, col])))
            best[key] = min(best.get(key, distance), distance)
        return [(row, watch_id, distance) for (row, watch_id), distance in sorted(best.items())]

    def check(self, face_ids, image_ids, vectors: np.ndarray) -> list[int]:
        """Faces just stored (ids, their images' ids, descriptors) against the active watches;
        hits recorded (and released withheld ones), then notified. Returns the new hits' ids."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        use = art12.Use()
        with self.db.session() as session:
            templates = self.templates(session)
            found = self.matches(templates, vectors)
            waiting = session.scalar(select(WatchHit.id).where(WatchHit.state == WITHHELD).limit(1))
        if not found and waiting is None:
            return []
        new: list[int] = []
        with self.db.session() as session, session.begin():
            opt_outs = self.opt_outs.get(session)
            blocked_faces = opt_outs.blocked(vectors) if found else []
            shown = release(session, self.settings) if waiting is not None else []
            for row, watch_id, distance in found:
                watch = session.get(Watch, watch_id)
                if blocked_faces[row] or not _active(session, watch):
                    continue
                if opt_outs.blocked(templates.vectors[templates.watch_ids == watch_id]).any():
                    continue  # an opted-out person's watch finds nothing, as their search would
                hit = WatchHit(watch_id=watch_id, face_id=int(face_ids[row]), image_id=int(image_ids[row]),
                               distance=distance, state=WITHHELD, created_at=now(), delivery={})
                if session.scalar(select(WatchHit.id).where(WatchHit.watch_id == watch_id,
                                                            WatchHit.face_id == hit.face_id)):
                    continue  # this face was reported to this watch already
                session.add(hit)
                session.flush()
                new.append(hit.id)
                if _show(session, self.settings, watch, hit, use, len(vectors)):
                    shown.append(hit.id)
        deliver(self.db, self.settings, shown)
        return new


# Notifications outside the app


def message(settings: Settings, watch_id: int, case_ref: str, hit: WatchHit) -> dict:
    """What a webhook or an email says: that there is a hit and where to see it; no face, image,
    page address or descriptor."""
    base = settings.public_url.rstrip("/")
    return {"event": "watch.hit", "watch_id": watch_id, "case_ref": case_ref, "hit_id": hit.id,
            "search_id": hit.search_id, "at": hit.created_at.isoformat(timespec="seconds"),
            "distance": round(hit.distance, 4), "inbox": f"{base}/watches/inbox"}


def deliver(db: Database, settings: Settings, hit_ids: list[int]) -> None:
    """One attempt at each pending webhook and email of these hits; each outcome is kept on the hit
    (shown in the inbox and watch list). Outside any transaction: a slow receiver holds no lock."""
    for hit_id in hit_ids:
        with db.session() as session:
            hit = session.get(WatchHit, hit_id)
            watch = session.get(Watch, hit.watch_id)
            payload = message(settings, watch.id, watch.case.ref, hit)
            targets = {"webhook": watch.webhook_url, "email": watch.email}
            pending = {channel: state for channel, state in (hit.delivery or {}).items() if state["state"] == "pending"}
        outcome = {}
        for channel in pending:
            try:
                if channel == "webhook":
                    notify.post_webhook(targets["webhook"], payload, settings)
                else:
                    notify.send_email(targets["email"], f"facetrail: new match for watch {payload['watch_id']} "
                                      f"(case {payload['case_ref']})", _email_text(payload), settings)
            except Exception as exc:  # noqa: BLE001 - a notification's failure is never the ingest's
                why = str(exc) if isinstance(exc, notify.DeliveryFailed) else f"{type(exc).__name__}: {exc}"
                outcome[channel] = {"state": "failed", "error": why[:500], "at": now().isoformat(timespec="seconds")}
            else:
                outcome[channel] = {"state": "sent", "at": now().isoformat(timespec="seconds")}
        if outcome:
            with db.session() as session, session.begin():
                hit = session.get(WatchHit, hit_id)
                hit.delivery = {**(hit.delivery or {}), **outcome}


def _email_text(payload: dict) -> str:
    return (f"Watch {payload['watch_id']} of case {payload['case_ref']} matched a newly indexed face "
            f"at {payload['at']} (distance {payload['distance']}).\n\n"
            f"See it in your inbox: {payload['inbox']} (sign-in needed).\n"
            f"The match is recorded as search {payload['search_id']} in the audit log.\n")
