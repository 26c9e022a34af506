"""The transparency report: what was searched, why, by whom (by role), with what oversight.

Everything is counted from the audit log (and the opt-out and query-descriptor tables), for
a period. `collect` gives plain data, `charts` draws it (matplotlib, PNG), `render` writes
the HTML that the command line saves and auditors see in the web app; `make` collects and
records the reading, `write` saves the files.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..faces.registry import model_info
from ..store import AuditEntry, Face, Image, Location, QueryEmbedding, Source
from . import audit
from .optout import monthly_totals
from .watches import totals as watch_totals

TEMPLATES = Path(__file__).resolve().parent / "templates"  # report.html, report_body.html (the web page includes the body)


CHARTS = {
    "searches_per_month": "Searches per month",
    "searches_per_role": "Searches per role",
    "searches_per_purpose": "Searches per purpose",
}


def period(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) in UTC."""
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )


def distinct_subjects(vectors: np.ndarray, threshold: float) -> int:
    """Number of groups of query descriptors linked by distances within the threshold."""
    n = len(vectors)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        close = np.flatnonzero(np.linalg.norm(vectors[i + 1 :] - vectors[i], axis=1) <= threshold)
        for j in close + i + 1:
            parent[root(int(j))] = root(i)
    return len({root(i) for i in range(n)})


def subjects_searched(session: Session, since: datetime, until: datetime, threshold: float | None = None) -> int:
    """The distinct people searched in [since, until), from the query descriptors still kept: per
    face model (descriptors of different models are never compared), one descriptor per search (the
    first photo's), grouped within `threshold` (None: each model's calibrated match threshold)."""
    per_model: dict[str, list[np.ndarray]] = {}
    for model, blob in session.execute(select(QueryEmbedding.model, QueryEmbedding.embedding).where(
            QueryEmbedding.created_at >= since, QueryEmbedding.created_at < until)):
        per_model.setdefault(model, []).append(np.frombuffer(blob, np.float32)[:model_info(model).dim])
    return sum(distinct_subjects(np.stack(rows), threshold or model_info(model).calibration.match_threshold)
               for model, rows in per_model.items())


def collect(session: Session, start: date, end: date, threshold: float | None = None) -> dict:
    """The report's data for [start, end]. `threshold`: the distance within which two searches are
    of one person, for every model (None: each model's calibrated match threshold)."""
    since, until = period(start, end)
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.created_at >= since, AuditEntry.created_at < until)
        .order_by(AuditEntry.id)
    ).all()
    searches = [e for e in entries if e.action == "search"]
    by_action = Counter(e.action for e in entries)
    decisions = [e for e in entries if e.action in ("search.approve", "search.deny")]
    count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "searches": len(searches),
        "searches_per_month": dict(sorted(Counter(e.created_at.strftime("%Y-%m") for e in searches).items())),
        "searches_per_role": dict(Counter(e.details.get("role", "?") for e in searches).most_common()),
        "searches_per_purpose": dict(Counter(e.purpose or "?" for e in searches).most_common()),
        "results_revealed": sum(1 for e in searches if e.details.get("outcome") == "ok" and e.details.get("result_count")),
        "results_withheld": sum(1 for e in searches if e.details.get("outcome") == "withheld"),
        "searches_without_face": sum(1 for e in searches if e.details.get("outcome") == "error"),
        "approvals": by_action["search.approve"],
        "denials": by_action["search.deny"],
        "decided_overdue": sum(1 for e in decisions if e.details.get("overdue")),
        "urgent_searches": sum(1 for e in searches if e.details.get("approval_policy") == "urgent"),
        "repeat_subject_holds": sum(1 for e in searches if e.details.get("hold")),
        "verified_matches": sum(1 for e in entries if e.action == "match.confirm" and e.details.get("state") == "verified"),
        "distinct_subjects": subjects_searched(session, since, until, threshold),
        "subjects_note": "query descriptors are kept for the repeat-subject window only, so older searches are not counted",
        "opt_outs": by_action["opt_out"],
        **opt_out_totals(session, start, end),
        "subject_reports": by_action["subject_report"],
        **watch_totals(session, since, until),  # watches and their hits (each hit is also one of the searches)
        "evaluations": latest_evaluations(session),
        "index": {"images": count(Image), "faces": count(Face), "locations": count(Location)},
        "sources": [{"name": source.name, "kind": source.kind, "legal_basis": source.legal_basis,
                     "status": source.status, "locations": n}
                    for source, n in session.execute(
                        select(Source, func.count(Location.id)).outerjoin(Location, Location.source_id == Source.id)
                        .group_by(Source.id).order_by(Source.name))],
    }


def latest_evaluations(session: Session) -> list[dict]:
    """The newest `facetrail evaluate` run of each face model (whenever it was made): when, on how
    many people and what gallery size, and its headline figures, from its audit entry."""
    newest: dict[str, AuditEntry] = {}
    for entry in session.scalars(select(AuditEntry).where(AuditEntry.action == "model.evaluate")
                                 .order_by(AuditEntry.id)):
        newest[entry.details.get("model", "?")] = entry
    return [{"model": model, "at": entry.created_at.strftime("%Y-%m-%d"), "entry_id": entry.id,
             "people": entry.details.get("people"),
             "gallery": (entry.details.get("figures", {}).get("counts") or {}).get("gallery"),
             "figures": {k: v for k, v in entry.details.get("figures", {}).items() if isinstance(v, int | float)}}
            for model, entry in sorted(newest.items())]


def opt_out_totals(session: Session, start: date, end: date) -> dict:
    """Faces removed and hidden by opt-outs, in all and per month, from the daily totals of the days
    of the period that have ended (no per-person count exists)."""
    months = monthly_totals(session, start.isoformat(), end.isoformat())
    return {
        "faces_removed": sum(m["faces_removed"] for m in months.values()),
        "faces_hidden": sum(m["faces_hidden"] for m in months.values()),
        "opt_outs_per_month": months,
    }


def charts(data: dict) -> dict[str, bytes]:
    """PNG bar charts of searches per month, role and purpose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {}
    for name, title in CHARTS.items():
        values = data[name] or {"none": 0}
        figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
        axes.bar(list(values), list(values.values()), color="#1f5fbf")
        axes.set_title(title)
        axes.tick_params(axis="x", labelrotation=20)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        drawn[name] = buffer.getvalue()
    return drawn


def render(data: dict, images: dict[str, str]) -> str:
    """The report as a standalone HTML document; `images` maps chart names to their URLs."""
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    return environment.get_template("report.html").render(report=data, images=images, standalone=True)


def make(session: Session, actor, start: date, end: date, threshold: float | None = None) -> dict:
    """The report's data for [start, end], recorded in the audit log as read by `actor` (the
    caller's transaction: the record and the reading stand or fall together)."""
    data = collect(session, start, end, threshold)
    audit.record(session, actor, "report", **{"from": data["from"], "to": data["to"]})
    return data


def write(data: dict, folder: Path) -> Path:
    """report.html with its charts (PNG) and report.json in `folder`; returns the HTML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in charts(data).items():
        (folder / f"{name}.png").write_bytes(png)
    (folder / "report.html").write_text(render(data, {name: f"{name}.png" for name in CHARTS}))
    (folder / "report.json").write_text(json.dumps(data, indent=2))
    return folder / "report.html"
