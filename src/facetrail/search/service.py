"""Search by photo: query photo -> faces -> nearest neighbours -> results, always audited.

`Searcher.search` is the only way to query the index: it refuses to run without an actor
and a purpose, and writes the audit entry in the same transaction that reads the results,
before returning anything.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..config import Settings
from ..faces import Face as FaceData
from ..faces import FaceEngine
from ..faces.registry import calibration, model_info
from ..governance import approvals, art12, audit, retention, verification
from ..governance import limits as rate_limits
from ..governance.actors import Actor
from ..governance.optout import OptOutCache, radii
from ..images.copies import MAX_DISTANCE, nearest, probe
from ..images.decode import DecodedImage, DecodeError, Limits, decode
from ..index import VectorIndex
from ..store import AuditEntry, Database, Face, Image
from .bands import band, meaning, threshold_at
from .copy_hashes import CopyHashes
from .provenance import appearances_of
from .results import Match, QueryFace, SearchResult, image_dict, similarity
from .rules import (
    SearchRefused,
    check_case,
    check_request,
    no_such_search,
    visible_search,
)
from .subject_access import SubjectAccess, request_details

# Query photos of at least twice this long side are decoded reduced (a 12 MP phone photo at half
# size: 3x faster to decode, 4x fewer pixels to scan); boxes are given in the photo's own pixels.
QUERY_SIDE = 1600


MAX_QUERY_PHOTOS = 10  # photos of one person in one search


@dataclass(frozen=True)
class _Query:
    """One query photo as the search sees it: what the result says about it, its descriptor."""

    query: dict  # sha256, name, faces (boxes), selected
    vector: np.ndarray | None
    error: str | None = None
    error_code: str | None = None


def _per_photo(photo, face, name) -> tuple[list[bytes], list[int | None], list[str | None]]:
    """The photos of a search with the face and name of each (single values for one photo)."""
    photos = [photo] if isinstance(photo, bytes | bytearray) else list(photo)
    if not 1 <= len(photos) <= MAX_QUERY_PHOTOS:
        raise SearchRefused(f"a search takes 1 to {MAX_QUERY_PHOTOS} photos of one person, not {len(photos)}",
                            "too_many_photos")
    faces = list(face) if isinstance(face, list | tuple) else [face] * len(photos)
    names = list(name) if isinstance(name, list | tuple) else [name] * len(photos)
    if len(faces) != len(photos) or len(names) != len(photos):
        raise SearchRefused("give one face number per photo", "no_such_face")
    return photos, faces, names


def _first_error(queries: list[_Query]) -> tuple[str | None, str | None]:
    """The first photo's problem, naming the photo when there are several."""
    for n, query in enumerate(queries, 1):
        if query.error:
            prefix = f"photo {n}: " if len(queries) > 1 else ""
            return prefix + query.error, query.error_code
    return None, None


@dataclass(frozen=True)
class ShownMedia:
    """What a search shows someone: face id -> (image sha256, face index), image id -> sha256."""

    faces: dict[int, tuple[str, int]]
    images: dict[int, str]


class ModelSwitched(SearchRefused):
    """The stored faces were switched to another face model (`facetrail reembed`) during a search."""

    code = "model_switched"


class Searcher(SubjectAccess):
    @classmethod
    def open(cls, settings: Settings, db: Database, background: bool = False) -> Searcher:
        """A searcher over the configured index with the configured face model (the web app passes
        the model in use, faces/registry.py `in_use`). `background`: train a compressed index in a
        thread (the web app) instead of before returning."""
        from ..faces import load_engine
        from ..index import open_index

        searcher = cls(settings, db, open_index(settings, db, background=background), load_engine(settings))
        searcher._background = background
        return searcher

    def __init__(self, settings: Settings, db: Database, index: VectorIndex, engine: FaceEngine) -> None:
        self.settings = settings
        self.db = db
        self.index = index
        self.engine = engine
        self.limits = Limits.from_settings(settings)
        self._engine_lock = threading.Lock()
        self._opt_outs = OptOutCache(radii(settings).block, settings.face_model if engine is None else engine.model_name)
        self._copy_hashes = CopyHashes()
        self._background = False
        self._successor: Searcher | None = None  # the searcher of the model the stored faces were switched to
        self._follow_lock = threading.Lock()

    def following(self) -> Searcher:
        """The searcher of the model the stored faces belong to now: this one, or once `facetrail
        reembed` has switched them to another model, that model's (its engine loaded, its index
        opened; once, then kept). The web app's follower asks every round; a search that finds the
        switch under it runs again on it. Refused (`model_mismatch`) if face_model is set to this
        searcher's model while the stored faces are another's."""
        from ..faces.registry import in_use, pinned, stored_model
        from ..index import check_model

        if self._successor is not None:
            return self._successor.following()
        stored = stored_model(self.db)
        if stored is None or stored == self.engine.model_name:
            return self
        if pinned(self.settings):
            check_model(self.settings, self.db)  # refused: the stored faces are another model's
            return self
        with self._follow_lock:
            if self._successor is None:
                followed = in_use(self.settings, self.db)
                self._successor = Searcher.open(followed, self.db, background=self._background)
        return self._successor.following()

    @property
    def match_threshold(self) -> float:
        """The largest distance reported as a match: the active model's calibrated threshold
        (faces/registry.py), unless FACETRAIL_MATCH_THRESHOLD sets one."""
        return calibration(self.settings).match_threshold

    @property
    def search_threshold(self) -> float:
        """The default largest distance a search reports: the match threshold, narrowed as the index
        grows (search/bands.py `threshold_at`: where most searches for someone absent would show a
        stranger this close); FACETRAIL_MATCH_THRESHOLD, when set, as it is."""
        if "match_threshold" in self.settings.model_fields_set:
            return self.match_threshold
        return threshold_at(max(1, len(self.index)), self.engine.model_name, self.match_threshold)

    def search(self, photo: bytes | list[bytes], **request) -> SearchResult:
        """`_search`, entirely with one face model: a search that finds the stored faces switched to
        another model under it (`facetrail reembed`) runs again, from the start, on that model."""
        searcher = self if self._successor is None else self.following()
        try:
            return searcher._search(photo, **request)
        except ModelSwitched:
            if searcher.following() is searcher:
                raise
            return searcher.following().search(photo, **request)

    def _search(
        self,
        photo: bytes | list[bytes],
        *,
        actor: Actor,
        purpose: str,
        justification: str,
        case_ref: str,
        face: int | None | list[int | None] = None,
        top_k: int | None = None,
        threshold: float | None = None,
        name: str | None | list[str | None] = None,
        urgent: bool = False,
    ) -> SearchResult:
        """Search for the person in `photo`, or in several photos of the same person (a list, 1 to
        MAX_QUERY_PHOTOS; `face` and `name` then per photo): each photo's chosen face (default:
        its largest) is a query descriptor, every result is ranked by its nearest one and says
        which photo matched it (`query_photo`). Raises SearchRefused unless the actor may search
        and gives a purpose category, a justification and a case reference. Under a `prior`
        approval policy the results are withheld until a supervisor approves (see `decide`)."""
        photos, chosen, names = _per_photo(photo, face, name)
        policy = check_request(self.settings, actor, purpose, justification, case_ref, urgent)
        justification, case_ref = justification.strip(), self._case(actor, case_ref, purpose)
        self._check_rate(actor)
        top_k = top_k or self.settings.top_k
        threshold = self.search_threshold if threshold is None else threshold
        use = art12.Use()  # Art. 12(3): the period of each use
        queries = [self._query(p, f, n) for p, f, n in zip(photos, chosen, names)]
        result = SearchResult(query={**queries[0].query, "photos": [q.query for q in queries]})
        result.error, result.error_code = _first_error(queries)
        vectors = [] if result.error else [q.vector for q in queries]
        sha = queries[0].query["sha256"]

        note = None
        with self.db.session() as session, session.begin():
            for vector in vectors:
                note = note or retention.repeat_subject_note(session, self.settings, actor.username, case_ref, vector,
                                                             self.engine.model_name)
            if note:
                policy = "prior"  # held for a supervisor, whatever the role's policy
            withheld = policy == "prior" and bool(vectors)
            blocked = any(self._query_blocked(session, vector) for vector in vectors)
            if vectors and not withheld:
                found = self._nearest_of(session, vectors, top_k, threshold, case_ref)
                result.results = [] if blocked else found  # the searcher is told only that nothing was found
            entry = audit.record(
                session,
                actor,
                "search",
                purpose,
                **{
                    **request_details(actor, justification, case_ref, sha),
                    "query_photos": [{"sha256": q.query["sha256"], "faces_found": len(q.query["faces"]),
                                      "selected_face": q.query["selected"]} for q in queries],
                    "faces_found": len(queries[0].query["faces"]),
                    "selected_face": result.query["selected"],
                    "top_k": top_k,
                    "threshold": threshold,
                    "model": self.engine.model_name,
                    "index": art12.reference_database(session, self.index, self.engine.model_name),
                    "use": use.period(),
                    "results": [[m.face_id, round(m.distance, 6)] for m in result.results],
                    **({"result_photos": [m.query_photo for m in result.results]} if len(queries) > 1 else {}),
                    "result_count": len(result.results),
                    "blocked_by_opt_out": blocked,
                    "approval_policy": policy,
                    "hold": note,
                    "outcome": "error" if result.error else "withheld" if withheld else "ok",
                },
            )
            result.audit_id = entry.id
            if vectors:
                stacked = np.stack([np.asarray(v, np.float32) for v in vectors])
                retention.remember(session, entry.id, actor.username, case_ref, stacked, self.engine.model_name)
                if policy != "none":
                    held = stacked if withheld else None
                    approval = approvals.open_approval(session, self.settings, entry, actor, policy, held, note)
                    result.approval = approvals.describe(approval)
        return result

    def _query(self, photo: bytes, face: int | None, name: str | None) -> _Query:
        """One query photo: its faces, the chosen one (default the largest) and its descriptor,
        or why it cannot be used."""
        query = {"sha256": hashlib.sha256(photo).hexdigest(), "name": name, "faces": [], "selected": None}
        try:
            _, faces = self.faces_in(photo)
        except DecodeError as exc:
            return _Query(query, None, f"not a usable image: {exc}", exc.reason)
        query["faces"] = [asdict(QueryFace(i, f.box, round(f.score, 4), f.size)) for i, f in enumerate(faces)]
        if not faces:
            return _Query(query, None, "no face found in the photo", "no_face")
        selected = 0 if face is None else face
        if not 0 <= selected < len(faces):
            return _Query(query, None, f"face {selected} does not exist: the photo has {len(faces)} face(s), "
                                       f"0-{len(faces) - 1}", "no_such_face")
        query["selected"] = selected
        return _Query(query, faces[selected].embedding)

    def _nearest_of(self, session, vectors: list, top_k: int, threshold: float, case_ref: str) -> list[Match]:
        """The top_k faces nearest to any of the query descriptors, each at its distance to the
        nearest one, which `query_photo` names."""
        best: dict[int, tuple[float, int]] = {}
        for photo, vector in enumerate(vectors):
            distances, ids = self.index.search(vector, top_k)
            for i, d in zip(ids[0], distances[0]):
                if i >= 0 and d <= threshold and (int(i) not in best or d < best[int(i)][0]):
                    best[int(i)] = (float(d), photo)
        hits = sorted(((face_id, d) for face_id, (d, _) in best.items()), key=lambda hit: hit[1])[:top_k]
        matches = self._matches(session, hits, case_ref)
        for match in matches:
            match.query_photo = best[match.face_id][1]
        return matches

    def decide(self, actor: Actor, approval_id: int, approve: bool, reason: str) -> dict:
        """A supervisor's decision on a search. Approving a prior search runs it now, with the
        held descriptor, which is then deleted (as it is on denial)."""
        if self._successor is not None:
            return self.following().decide(actor, approval_id, approve, reason)
        extra = {}
        with self.db.session() as session, session.begin():
            approval, overdue = approvals.decide(session, actor, approval_id, approve, reason)
            if approval.held_embedding is not None:
                if approve:
                    search = session.get(AuditEntry, approval.search_id)
                    if search.details.get("model", self.engine.model_name) != self.engine.model_name:
                        raise ModelSwitched(
                            f"this search was made with the face model {search.details['model']}; the stored "
                            f"faces are now described by {self.engine.model_name} (facetrail reembed): its "
                            "descriptor cannot be compared with them. Deny it; the requester can search "
                            "again")
                    vectors = list(np.frombuffer(approval.held_embedding, np.float32).reshape(-1, self.index.dim))
                    found = self._nearest_of(session, vectors, search.details["top_k"], search.details["threshold"],
                                             search.details["case_ref"])
                    blocked = any(self._query_blocked(session, vector) for vector in vectors)
                    approval.results = [] if blocked else [[m.face_id, round(m.distance, 6)] for m in found]
                    if len(vectors) > 1:  # which photo each result matched, as a search's own entry says
                        extra["result_photos"] = [] if blocked else [m.query_photo for m in found]
                approval.held_embedding = None
            approvals.record_decision(session, actor, approval, overdue, **extra)
            return approvals.describe(approval)

    def results_of(self, actor: Actor, search_id: int) -> SearchResult:
        """The results of an earlier search, for its requester or a supervisor, once they may be seen
        (rules.visible_search; any other search is `not_found`)."""
        with self.db.session() as session:
            seen = visible_search(session, actor, search_id)
            search = seen.entry
            result = SearchResult(
                query={"sha256": search.details["query_sha256"], "selected": search.details["selected_face"],
                       "photos": [{"sha256": p["sha256"], "selected": p["selected_face"]}
                                  for p in search.details.get("query_photos", [])]},
                audit_id=search_id,
                approval=approvals.describe(seen.approval) if seen.approval else None,
            )
            if search.details.get("mode") == "copies":
                result.mode = "copies"
                result.copies = self._copy_rows(session, [list(c) for c in seen.copies])
                return result
            measured = search.details.get("model") or self.engine.model_name  # its own model's bands
            result.results = self._matches(session, seen.hits, search.details["case_ref"], measured)
            for match in result.results:
                match.query_photo = seen.photo_of.get(match.face_id, 0)
            return result

    def may_see(self, actor: Actor, search_id: int) -> bool:
        """Whether `actor` may see search `search_id` now (rules.visible_search): for a page that
        shows it, which answers 404 otherwise, like any id of nothing."""
        with self.db.session() as session:
            try:
                visible_search(session, actor, search_id)
            except SearchRefused:
                return False
        return True

    def shown_media(self, actor: Actor, search_id: int) -> ShownMedia:
        """The face crops and thumbnails search `search_id` shows `actor` now: its visible results
        that are still indexed and not opted out (the same faces `results_of` gives). Nothing for
        a search the actor may not see."""
        with self.db.session() as session:
            try:
                seen = visible_search(session, actor, search_id)
            except SearchRefused:
                return ShownMedia({}, {})
            images = dict(session.execute(
                select(Image.id, Image.sha256).where(Image.id.in_([i for i, _ in seen.copies]))).all())
            rows = session.execute(
                select(Face.id, Face.idx, Face.embedding, Image.id, Image.sha256)
                .join(Image, Image.id == Face.image_id).where(Face.id.in_(seen.face_ids))).all()
            if not rows:
                return ShownMedia({}, images)
            blocked = self._opt_outs.get(session).blocked(np.stack([np.frombuffer(r[2], np.float32) for r in rows]))
        faces = {}
        for (face_id, idx, _, image_id, sha), out in zip(rows, blocked):
            if not out:
                faces[face_id] = (sha, idx)
                images[image_id] = sha
        return ShownMedia(faces, images)

    def copies(self, photo: bytes, *, actor: Actor, purpose: str, justification: str, case_ref: str,
               top_k: int | None = None, name: str | None = None) -> SearchResult:
        """Find copies of `photo` itself (resized, recompressed, cropped up to 10% per side, lighter or
        darker, mirrored) by perceptual hash. The same rules as a face search apply: purpose,
        justification, case reference, rate limits, the audit log and review; under a `prior`
        approval policy copy search is refused (there is no face descriptor to hold)."""
        policy = check_request(self.settings, actor, purpose, justification, case_ref)
        if policy == "prior":
            raise SearchRefused("your searches need a supervisor's prior approval: use a face search, which "
                                "can be held for approval", "prior_approval_required")
        justification, case_ref = justification.strip(), self._case(actor, case_ref, purpose)
        self._check_rate(actor)
        top_k = top_k or self.settings.top_k
        sha = hashlib.sha256(photo).hexdigest()
        result = SearchResult(query={"sha256": sha, "name": name, "faces": [], "selected": None}, mode="copies")
        hits: list[list[int]] = []
        try:
            query = probe(decode(photo, self.limits, max_side=QUERY_SIDE).pixels)
        except DecodeError as exc:
            result.error, result.error_code = f"not a usable image: {exc}", exc.reason
        with self.db.session() as session, session.begin():
            size = 0
            if not result.error:
                ids, table = self._copy_hashes.get(session)
                size = len(ids)
                if size:
                    hits = [[int(ids[row]), int(bits)] for row, bits in nearest(query, table)[:top_k]]
                result.copies = self._copy_rows(session, hits)
            entry = audit.record(
                session,
                actor,
                "search",
                purpose,
                **{
                    "mode": "copies",
                    **request_details(actor, justification, case_ref, sha),
                    "faces_found": 0,
                    "selected_face": None,
                    "top_k": top_k,
                    "threshold": MAX_DISTANCE,
                    "model": "phash-64",
                    "index": {"kind": "copy-hash", "size": size},
                    "results": [],
                    "copies": [[c["image"]["id"], c["distance"]] for c in result.copies],
                    "result_count": len(result.copies),
                    "approval_policy": policy,
                    "hold": None,
                    "outcome": "error" if result.error else "ok",
                },
            )
            result.audit_id = entry.id
            if policy != "none":
                result.approval = approvals.describe(
                    approvals.open_approval(session, self.settings, entry, actor, policy, None))
        return result

    def _case(self, actor: Actor, case_ref: str, purpose: str) -> str:
        """The open case the search is made under (rules.check_case), before anything is decoded."""
        with self.db.session() as session:
            return check_case(session, actor, case_ref, purpose)

    def _check_rate(self, actor: Actor, default: dict[str, int] | None = None) -> None:
        """Raise RateLimited if the actor has used up a search limit (the user's, else the role's,
        else `default`)."""
        limits = (self.settings.user_search_limits.get(actor.username)
                  or self.settings.search_limits.get(actor.role) or default or {})
        with self.db.session() as session:
            rate_limits.check(session, actor.username, limits)

    def _copy_rows(self, session, hits: list[list[int]]) -> list[dict]:
        """Copy-search results for (image id, Hamming distance) hits, images deleted since left out."""
        images = {i.id: i for i in session.scalars(
            select(Image).where(Image.id.in_([i for i, _ in hits])).options(selectinload(Image.locations)))}
        where = appearances_of(session, images)
        return [{"distance": bits, "image": image_dict(images[i], where.get(i, []))}
                for i, bits in hits if i in images]

    def faces_in(self, photo: bytes) -> tuple[DecodedImage, list[FaceData]]:
        """Decode a query photo and find its faces (largest first). Raises DecodeError.

        This only looks at the photo; it does not query the index, so it is not a search."""
        image = decode(photo, self.limits, max_side=QUERY_SIDE)
        with self._engine_lock:  # dlib's detectors are not safe to share between threads
            faces = self.engine.faces(image.pixels)
        return image, [f.scaled(1 / image.scale) for f in faces] if image.scale != 1.0 else faces

    def _query_blocked(self, session, vector: np.ndarray) -> bool:
        """True if a query face matches an opt-out (blocking radius): its search returns nothing."""
        return bool(self._opt_outs.get(session).blocked(vector)[0])

    def _meaning(self, distance: float, model: str | None = None) -> str:
        """What `distance` means at the index's current size, for the model in use or `model` ("" for
        a model without a fitted impostor tail)."""
        try:
            return meaning(distance, max(1, len(self.index)), model or self.engine.model_name)
        except ValueError:
            return ""

    def _matches(self, session, hits: list[tuple[int, float]], case_ref: str,
                 model: str | None = None) -> list[Match]:
        """Result rows for (face id, distance) hits: deleted and opted-out faces left out. `model`: the
        model the distances were measured with, if not this searcher's (an earlier search read back);
        else the stored faces must still be this model's (ModelSwitched)."""
        if not hits:
            return []
        rows = {
            f.id: f
            for f in session.scalars(
                select(Face)
                .where(Face.id.in_([i for i, _ in hits]))
                .options(selectinload(Face.image).selectinload(Image.locations))
            )
        }
        found = [face_id for face_id, _ in hits if face_id in rows]  # others were removed meanwhile
        measured = model or self.engine.model_name
        switched = {rows[i].model for i in found} - {measured}
        if switched and model is None:  # the distances are this model's, the stored faces now another's
            raise ModelSwitched(f"the stored faces were switched to the face model {switched.pop()} during "
                                "the search: search again")
        blocked = self._opt_outs.get(session).blocked(  # the last guard: opted-out faces never return
            np.stack([np.frombuffer(rows[i].embedding, np.float32) for i in found])) if found else []
        shown = {face_id for face_id, out in zip(found, blocked) if not out}
        where = appearances_of(session, [f.image_id for f in rows.values()])
        matches = []
        for face_id, distance in hits:
            if face_id not in shown:
                continue
            row = rows[face_id]
            image = row.image
            matches.append(
                Match(
                    face_id=face_id,
                    distance=round(distance, 6),
                    similarity=similarity(distance, self.match_threshold if measured == self.engine.model_name
                                          else model_info(measured).calibration.match_threshold),
                    band=band(distance, measured),
                    band_meaning=self._meaning(distance, measured),
                    box=row.box,
                    image=image_dict(image, where.get(image.id, [])),
                )
            )
        confirmed = verification.confirmations(session, case_ref, [m.face_id for m in matches])
        for match in matches:
            by = confirmed.get(match.face_id, [])
            match.verification = {"state": verification.state(by), "confirmed_by": by}
        return matches


def confirm_match(db: Database, actor: Actor, search_id: int, face_id: int) -> dict:
    """`actor` confirms that result `face_id` of search `search_id` shows the person searched for.
    Only someone who may see that search's results now may confirm one of them; any other search
    (unknown, someone else's, held for or refused prior approval) is `not_found`."""
    if not actor.can("search"):
        raise verification.VerificationError(f"the {actor.role} role may not confirm matches", "not_permitted")
    with db.session() as session, session.begin():
        seen = visible_search(session, actor, search_id)
        if not seen.shown or seen.entry.details.get("mode") in ("copies", "subject-access"):
            raise no_such_search(search_id)
        return verification.confirm(session, actor, seen.entry, seen.face_ids, face_id)
