"""Appearances (an image shown on a web page), stored only for images whose bytes were stored.

A crawled page is reported before its images are fetched. An appearance of an image the source
holds no stored bytes for yet waits in `Waiting` until that image's location is stored with its
image (`settle(stored=True)`: the appearance is written in the same transaction) or without one
(unusable bytes: it is dropped); those still waiting when the ingest ends (images not fetched: a
fetch error, robots.txt, scope, the crawl's limits) are dropped then. A skip does not drop them
at once: it names a URL, not whether it was fetched as a page or an image, and an image URL a link
reached first is reported not_html as a page before it is fetched as an image. So every appearance
refers to bytes that were fetched and stored, and a page's appearances are written a page (at most
the crawl's per-page image cap) or an image at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store import Appearance, Location

if TYPE_CHECKING:
    from .pipeline import PageRecord

_CHUNK = 500  # URLs per IN (...) query


@dataclass(frozen=True)
class Shown:
    """An image shown on a page, waiting for the image's bytes to be stored."""

    page: PageRecord
    alt: str
    seen: datetime


class Waiting:
    """Image URL -> the pages waiting to show it; `dropped` counts appearances never written."""

    def __init__(self) -> None:
        self._by_image: dict[str, list[Shown]] = {}
        self.dropped = 0

    def hold(self, url: str, shown: Shown) -> None:
        self._by_image.setdefault(url, []).append(shown)

    def take(self, url: str) -> list[Shown]:
        return self._by_image.pop(url, [])

    def drop(self, url: str) -> None:
        self.dropped += len(self.take(url))

    def drop_all(self) -> None:
        self.dropped += sum(len(shown) for shown in self._by_image.values())
        self._by_image.clear()

    def __len__(self) -> int:
        return sum(len(shown) for shown in self._by_image.values())


def appearance_key(page_url: str, image_url: str) -> str:
    return hashlib.sha256(f"{page_url}\0{image_url}".encode()).hexdigest()


def _new(source_id: int, page: PageRecord, url: str, alt: str, seen: datetime) -> Appearance:
    return Appearance(source_id=source_id, key=appearance_key(page.url, url), page_url=page.url,
                      canonical_url=page.canonical_url, page_title=page.title[:1000], image_url=url,
                      alt=alt[:1000], status=page.status, gone=False, first_seen=seen, last_seen=seen)


def _stored(session: Session, source_id: int, urls: list[str]) -> set[str]:
    """The URLs among `urls` whose location in the source holds stored bytes."""
    found: set[str] = set()
    for at in range(0, len(urls), _CHUNK):
        found.update(session.scalars(select(Location.location).where(
            Location.source_id == source_id, Location.location.in_(urls[at:at + _CHUNK]),
            Location.image_id.is_not(None))))
    return found


def record_page(session: Session, source_id: int, page: PageRecord, waiting: Waiting, now: datetime) -> None:
    """Record the images a page shows: earlier appearances it no longer shows are gone; new ones are
    written if the image's bytes are stored, else they wait (see the module docstring)."""
    seen = page.seen or now
    images = dict(page.images)  # image URL -> alt (one appearance per URL and page)
    rows = {row.image_url: row for row in session.scalars(select(Appearance).where(
        Appearance.source_id == source_id, Appearance.page_url == page.url))}
    for url, row in rows.items():
        if url not in images and seen >= row.last_seen:
            row.gone = True
    stored = _stored(session, source_id, [url for url in images if url not in rows])
    for url, alt in images.items():
        row = rows.get(url)
        if row is None:
            if url in stored:
                session.add(_new(source_id, page, url, alt, seen))
            else:
                waiting.hold(url, Shown(page, alt, seen))
            continue
        row.first_seen = min(row.first_seen, seen)
        if seen >= row.last_seen:
            row.last_seen, row.gone, row.alt, row.status = seen, False, alt[:1000], page.status
            row.page_title, row.canonical_url = page.title[:1000], page.canonical_url


def settle(session: Session, source_id: int, waiting: Waiting, url: str, stored: bool) -> None:
    """The location `url` was stored, with bytes (`stored`) or without: write or drop what waited."""
    if not stored:
        waiting.drop(url)
        return
    shown = {appearance_key(s.page.url, url): s for s in waiting.take(url)}
    if not shown:
        return
    present = set(session.scalars(select(Appearance.key).where(
        Appearance.source_id == source_id, Appearance.key.in_(list(shown)))))
    for key, s in shown.items():
        if key not in present:
            session.add(_new(source_id, s.page, url, s.alt, s.seen))
