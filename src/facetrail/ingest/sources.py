"""Declared sources: what may be indexed, why (a legal basis is required) and within which scope.

facetrail indexes declared sources only (untargeted scraping of facial images is prohibited in the
EU, AI Act Art. 5(1)(e)): every image appearance belongs to a source, nothing outside a source's
scope is fetched, and removing a source removes its appearances and the faces seen nowhere else.
Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..crawl.scope import Scope
from ..errors import Refused
from ..governance import audit
from ..governance.actors import Actor
from ..store import Appearance, Face, Location, Source
from ..store.cleanup import Orphan, delete_unreferenced

KINDS = ("site", "folder", "urls", "warc")
STATUSES = ("active", "suspended")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_LEGAL_BASIS = 10  # characters: a reason, not a placeholder


class SourceError(Refused):
    """A source that cannot be declared, found or used; the message says why."""

    code = "source_refused"


@dataclass(frozen=True)
class SourceSpec:
    """What `add_source` declares. Sites need start URLs (their hosts are the default scope);
    folders need paths; URL lists and archives may limit hosts (default: any public host)."""

    name: str
    kind: str
    legal_basis: str
    start_urls: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)  # max_pages, max_depth for sites


def _now() -> datetime:
    return datetime.now(UTC)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{url!r} is not an http(s) URL")
    default = {"http": 80, "https": 443}[parts.scheme]
    return parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"


def _scope(spec: SourceSpec) -> dict:
    if spec.kind == "folder":
        if not spec.paths:
            raise SourceError("a folder source needs at least one --path")
        paths = []
        for raw in spec.paths:
            path = Path(raw).expanduser().absolute()
            if not path.exists():
                raise SourceError(f"no such file or folder: {path}")
            paths.append(str(path))
        return {"paths": paths}
    if spec.kind == "site" and not spec.start_urls:
        raise SourceError("a site source needs at least one --url to start crawling from")
    hosts = list(dict.fromkeys(spec.hosts or [_host_of(u) for u in spec.start_urls]))
    scope = {"hosts": hosts, "prefixes": list(spec.prefixes), "start_urls": list(spec.start_urls)}
    if hosts or spec.prefixes:
        try:
            checked = Scope(frozenset(hosts), tuple(spec.prefixes))
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        for url in spec.start_urls:
            if not checked.allows(url):
                raise SourceError(f"start URL {url} is outside the source's scope")
    return scope


def add_source(session: Session, actor: Actor, spec: SourceSpec) -> Source:
    """Declare a source (audited as source.add). Raises SourceError if it is not acceptable."""
    if not _NAME.match(spec.name):
        raise SourceError("a source name is 1-64 characters: lower-case letters, digits, '.', '_', '-'")
    if spec.kind not in KINDS:
        raise SourceError(f"unknown kind {spec.kind!r}; one of {', '.join(KINDS)}")
    if len(spec.legal_basis.strip()) < MIN_LEGAL_BASIS:
        raise SourceError("a source needs a legal basis: say why these images may be indexed "
                          f"(at least {MIN_LEGAL_BASIS} characters)")
    if session.scalar(select(Source.id).where(Source.name == spec.name)) is not None:
        raise SourceError(f"a source named {spec.name!r} exists already")
    source = Source(name=spec.name, kind=spec.kind, scope=_scope(spec), options=dict(spec.options),
                    legal_basis=spec.legal_basis.strip(), owner=actor.username, status="active",
                    created_at=_now())
    session.add(source)
    session.flush()
    audit.record(session, actor, "source.add", source=source.name, kind=source.kind, scope=source.scope,
           options=source.options, legal_basis=source.legal_basis)
    return source


def get_source(session: Session, name: str) -> Source:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        raise SourceError(f"no source named {name!r} (see `facetrail source list`)")
    return source


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def usable(source: Source, kind: str) -> None:
    """Raise SourceError unless `source` is an active source of `kind`."""
    if source.kind != kind:
        raise SourceError(f"source {source.name!r} is a {source.kind} source, not a {kind} source")
    if source.status != "active":
        raise SourceError(f"source {source.name!r} is {source.status}; resume it first")


def source_to_ingest(session: Session, name: str, kind: str, legal_basis: str | None,
                     declarer: Callable[[], Actor]) -> Source:
    """The active source `name` of `kind` that an ingest or crawl fills; declared on the spot, by
    `declarer()` (asked only then) with `legal_basis`, when there is none and a legal basis is given."""
    try:
        source = get_source(session, name)
    except SourceError:
        if not legal_basis:
            raise SourceError(f"no source named {name!r}: declare it with `facetrail source add {name} "
                              f"--kind {kind} --legal-basis TEXT`, or give --legal-basis") from None
        source = add_source(session, declarer(), SourceSpec(name, kind, legal_basis))
    usable(source, kind)
    return source


def mark_run(session: Session, source: Source) -> None:
    """Record that `source` was just crawled or ingested (its "last run")."""
    session.get(Source, source.id).last_run_at = _now()


def set_status(session: Session, actor: Actor, name: str, status: str) -> Source:
    """Suspend (nothing more is fetched or ingested; what is indexed stays) or resume a source."""
    if status not in STATUSES:
        raise SourceError(f"status must be one of {', '.join(STATUSES)}")
    source = get_source(session, name)
    source.status = status
    audit.record(session, actor, "source.suspend" if status == "suspended" else "source.resume", source=name)
    return source


def remove_source(session: Session, actor: Actor, name: str) -> list[Orphan]:
    """Remove a source, its locations and appearances (audited as source.remove). Images seen in
    no other source are deleted with their faces; the caller drops the returned orphans from the
    index and media after the commit, and deletes the source's captures (`capture.remove`)."""
    source = get_source(session, name)
    image_ids = set(session.scalars(
        select(Location.image_id).where(Location.source_id == source.id, Location.image_id.is_not(None))))
    locations = session.scalar(select(func.count()).select_from(Location).where(Location.source_id == source.id))
    session.execute(delete(Appearance).where(Appearance.source_id == source.id))
    session.execute(delete(Location).where(Location.source_id == source.id))
    session.execute(delete(Source).where(Source.id == source.id))
    orphans = delete_unreferenced(session, image_ids)
    audit.record(session, actor, "source.remove", source=name, kind=source.kind, locations=locations,
           images_removed=len(orphans), faces_removed=sum(len(ids) for _, ids in orphans))
    return orphans


def folder_source_for(session: Session, path: Path) -> Source | None:
    """The active folder source whose paths hold `path`, if any."""
    path = Path(path).absolute()
    for source in session.scalars(select(Source).where(Source.kind == "folder", Source.status == "active")):
        if any(path == Path(p) or Path(p) in path.parents for p in source.scope.get("paths", [])):
            return source
    return None


def folder_source(session: Session, actor: Actor, paths: list[Path], legal_basis: str | None = None,
                  name: str | None = None) -> Source:
    """The folder source that holds all `paths`, declared on the spot (named after the first folder,
    or `name`) when there is none and a legal basis is given."""
    paths = [Path(p).absolute() for p in paths]
    found = {folder_source_for(session, p) for p in paths}
    if len(found) == 1 and None not in found:
        return found.pop()
    if not legal_basis:
        raise SourceError(
            f"{paths[0]} is not in a declared folder source. Declare one with `facetrail source add NAME "
            "--kind folder --path PATH --legal-basis TEXT`, or give --legal-basis to declare it now")
    if name is None:
        base = re.sub(r"[^a-z0-9._-]+", "-", paths[0].name.lower()).strip("-._")[:56] or "folder"
        name, n = base, 1
        while session.scalar(select(Source.id).where(Source.name == name)) is not None:
            n += 1
            name = f"{base}-{n}"
    return add_source(session, actor, SourceSpec(name, "folder", legal_basis, paths=tuple(map(str, paths))))


def site_scope(source: Source) -> Scope | None:
    """The crawl/fetch scope of a site, urls or warc source (None: any public host)."""
    hosts = source.scope.get("hosts") or []
    if not hosts:
        return None
    return Scope(frozenset(hosts), tuple(source.scope.get("prefixes") or ()))


def counts(session: Session, source: Source) -> dict[str, int]:
    """Locations, images, faces, appearances and errors of a source."""
    def count(query) -> int:
        return session.scalar(query) or 0

    in_source = Location.source_id == source.id
    return {
        "locations": count(select(func.count()).select_from(Location).where(in_source)),
        "images": count(select(func.count(func.distinct(Location.image_id))).where(in_source)),
        "faces": count(select(func.count(Face.id)).where(
            Face.image_id.in_(select(Location.image_id).where(in_source)))),
        "appearances": count(select(func.count()).select_from(Appearance).where(
            Appearance.source_id == source.id)),
        "gone": count(select(func.count()).select_from(Appearance).where(
            Appearance.source_id == source.id, Appearance.gone.is_(True))),
        "errors": count(select(func.count()).select_from(Location).where(in_source, Location.error.is_not(None))),
    }


def as_dict(source: Source) -> dict:
    return {"name": source.name, "kind": source.kind, "status": source.status, "scope": source.scope,
            "options": source.options, "legal_basis": source.legal_basis, "owner": source.owner,
            "created_at": source.created_at.isoformat(),
            "last_run_at": source.last_run_at.isoformat() if source.last_run_at else None}
