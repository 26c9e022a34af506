"""Scheduled re-crawls (issue 13 item 9): a site declared with --every is crawled by `facetrail
scheduler` when due, and each scheduled crawl is in the audit log; a source without an interval,
or not yet due, is left alone. A local site on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from facetrail.ingest.schedule import due, parse_every
from facetrail.store import AuditEntry, Database, Source

from .support import Route, serve
from .test_crawl_recrawl import data as data  # noqa: PLC0414 - a data folder on SQLite or PostgreSQL
from .test_crawl_store import LEGAL, cli


def test_intervals() -> None:
    assert parse_every("1d") == 86400 and parse_every("6h") == 21600 and parse_every(" 2W ") == 1209600
    for bad in ("1", "d", "1 day", "5m", "-1h", ""):
        with pytest.raises(ValueError):
            parse_every(bad)


def test_a_scheduled_site_is_crawled_when_due_and_audited(data, db_url, dev_images, monkeypatch) -> None:
    with serve("", "") as (web, other):
        for site in (web, other):
            site.routes["/"] = Route.html("<title>Home</title><img src='/a.jpg'>")
            site.routes["/a.jpg"] = Route.image(dev_images[0].path.read_bytes())
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port} 127.0.0.1:{other.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        refused = cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                      "--every", "1m", user="ada")
        assert refused.exit_code == 2 and "--every" in refused.output  # more often than every 10 minutes
        assert cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                   "--every", "1d", user="ada").exit_code == 0
        assert cli(data, "source", "add", "manual", "--url", other.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        first = cli(data, "scheduler", "--once", "--workers", "1")
        assert first.exit_code == 0, first.output
        assert "news: 1 pages" in first.stdout and "manual" not in first.stdout
        assert "/a.jpg" in web.paths() and other.log == []  # no interval: never scheduled
        requests = len(web.log)
        second = cli(data, "scheduler", "--once", "--workers", "1")  # ran just now: not due for a day
        assert second.exit_code == 0 and len(web.log) == requests
    db = Database(db_url)
    with db.session() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "source.crawl")))
        assert len(entries) == 1 and entries[0].details["source"] == "news"
        assert entries[0].details["scheduled"] is True and entries[0].details["every"] == 86400
        news = session.scalars(select(Source).where(Source.name == "news")).one()
        tomorrow = news.last_run_at + timedelta(days=1, seconds=1)
        assert [s.name for s in due(session, tomorrow)] == ["news"]
        assert due(session, datetime.now(UTC)) == []
