"""Crawls that run on their own: a site source declared with an interval (`source add --every 1d`,
the source option `every`, in seconds) is due once its last run is that long ago (or it never
ran). `run_due` crawls each due source once, exactly as `facetrail crawl` does (conditional
re-crawl, resume marker, limits), after recording it in the audit log (`source.crawl`, by the
system, `scheduled`); `facetrail scheduler` calls it in a loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..governance import audit
from ..index import VectorIndex
from ..store import Database, Source
from .pipeline import Ingestor, Summary
from .remote import crawl_feed
from .sources import mark_run

MIN_EVERY = 600  # seconds: no site is crawled more often than every 10 minutes
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EVERY = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_every(text: str) -> int:
    """Seconds of an interval written `30m`, `6h`, `1d`, `2w` (s, m, h, d, w); at least `MIN_EVERY`."""
    match = _EVERY.match(text.lower())
    if match is None:
        raise ValueError(f"interval {text!r}: write a number and a unit (s, m, h, d, w), e.g. 1d or 6h")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds < MIN_EVERY:
        raise ValueError(f"interval {text!r}: a site is crawled at most every {MIN_EVERY // 60} minutes")
    return seconds


def due(session: Session, now: datetime) -> list[Source]:
    """The active site sources with an interval whose last run is at least that long ago."""
    sources = session.scalars(select(Source).where(Source.kind == "site", Source.status == "active")
                              .order_by(Source.name))
    return [source for source in sources if (every := (source.options or {}).get("every"))
            and (source.last_run_at is None or source.last_run_at + timedelta(seconds=int(every)) <= now)]


@dataclass(frozen=True)
class Run:
    source: str
    summary: Summary


def run_due(settings: Settings, db: Database, index: VectorIndex, now: datetime | None = None,
            pool: ProcessPoolExecutor | None = None, on_run: Callable[[Run], None] | None = None) -> list[Run]:
    """Crawl every source due at `now` (default: now), one after the other; returns what each did."""
    with db.session() as session:
        sources = due(session, now or datetime.now(UTC))
        session.expunge_all()
    runs = []
    for source in sources:
        with db.session() as session, session.begin():
            audit.record(session, None, "source.crawl", source=source.name, scheduled=True,
                         every=int(source.options["every"]))
        feed = crawl_feed(settings, db, source)
        summary = Ingestor(settings, db, index, source, pool=pool).run(feed)
        with db.session() as session, session.begin():
            mark_run(session, source)
        feed.stored()
        runs.append(Run(source.name, summary))
        if on_run is not None:
            on_run(runs[-1])
    return runs
