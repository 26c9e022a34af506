"""Where a result's image was found: every appearance (page or file) with its dates, and results
grouped by domain and page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from ..store import Appearance, Location, Source

LOCAL = "local files"


def _domain(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.hostname if parts.scheme in ("http", "https") else None


def _iso(value) -> str:
    return value.isoformat()


def appearances_of(session: Session, image_ids: Iterable[int]) -> dict[int, list[dict]]:
    """For each image id: where it appears, most recently seen first. A web image gives one entry
    per page showing it (and one without a page if no page is on record, e.g. from a URL list);
    a file gives one entry with its path. `gone` is true once the page no longer shows it or the
    image URL no longer answers."""
    ids = list(set(image_ids))
    found: dict[int, list[dict]] = defaultdict(list)
    if not ids:
        return found
    locations = session.execute(
        select(Location, Source.name, Source.kind).join(Source, Source.id == Location.source_id)
        .where(Location.image_id.in_(ids))
    ).all()
    pages = session.execute(
        select(Appearance, Location.image_id, Location.gone)
        .join(Location, and_(Location.source_id == Appearance.source_id, Location.location == Appearance.image_url))
        .where(Location.image_id.in_(ids))
    ).all()
    sources = {(loc.source_id, loc.location): (name, kind) for loc, name, kind in locations}
    shown: set[tuple[int, int]] = set()  # (source id, image id) with at least one page
    for page, image_id, image_gone in pages:
        source, kind = sources[(page.source_id, page.image_url)]
        shown.add((page.source_id, image_id))
        found[image_id].append({
            "source": source, "kind": kind, "domain": _domain(page.page_url), "page_url": page.page_url,
            "page_title": page.page_title, "canonical_url": page.canonical_url, "location": page.image_url,
            "alt": page.alt, "first_seen": _iso(page.first_seen), "last_seen": _iso(page.last_seen),
            "gone": bool(page.gone or image_gone)})
    for location, source, kind in locations:
        if (location.source_id, location.image_id) in shown:
            continue
        found[location.image_id].append({
            "source": source, "kind": kind, "domain": _domain(location.location), "page_url": None,
            "page_title": None, "canonical_url": None, "location": location.location, "alt": None,
            "first_seen": _iso(location.first_seen), "last_seen": _iso(location.last_seen),
            "gone": bool(location.gone)})
    for entries in found.values():  # live first, then most recently seen
        entries.sort(key=lambda a: a["last_seen"], reverse=True)
        entries.sort(key=lambda a: a["gone"])
    return found


def by_domain(results: list[dict]) -> list[dict]:
    """Results (as dicts, best first) grouped by domain, then page: each group lists the ranks
    (1-based positions in `results`) shown there; groups come in the order of their best result."""
    domains: dict[str, dict[str | None, dict]] = {}
    for rank, result in enumerate(results, 1):
        for appearance in result["image"].get("appearances", []):
            domain = appearance["domain"] or LOCAL
            page_key = appearance["page_url"] or (None if appearance["domain"] is None else appearance["location"])
            pages = domains.setdefault(domain, {})
            page = pages.setdefault(page_key, {"url": page_key, "title": appearance["page_title"], "ranks": [],
                                               "gone": True})
            if rank not in page["ranks"]:
                page["ranks"].append(rank)
            page["gone"] = page["gone"] and appearance["gone"]
    return [{"domain": domain, "pages": list(pages.values())} for domain, pages in domains.items()]
