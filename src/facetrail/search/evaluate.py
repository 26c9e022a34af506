"""`facetrail evaluate`: a face model's error rates measured on a labelled folder, recorded in
the audit log. The folder holds photos and `manifest.csv` with the columns `path` (relative to
the folder), `identity` and, optionally, `group` (figures are then also given per group). Rows
whose identity is `none` or `unknown` (distractors) are left out. The protocol and the figures
are in metrics.py; docs/models.md says what they mean."""

from __future__ import annotations

import csv
import hashlib
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import Refused
from ..faces import FaceEngine, load_engine
from ..governance import audit
from ..governance.actors import Actor
from ..images.decode import DecodeError, Limits, decode
from ..store import Database
from . import metrics

MANIFEST = "manifest.csv"
UNLABELLED = ("none", "unknown")
MEANING = (
    "Measured on the labelled photos named, with one photo per person enrolled and every other photo "
    "searched; a gallery this small says little about a gallery of millions: the chance that a stranger "
    "is closer than the threshold grows with the gallery's size. Intervals are 95 % bootstrap intervals "
    "over searches (or pairs), which are not fully independent: read them as a lower bound of the uncertainty."
)


@dataclass(frozen=True)
class Labelled:
    path: Path
    identity: str
    group: str = ""


def read_manifest(folder: Path) -> list[Labelled]:
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise Refused(f"{manifest} not found: a labelled folder needs a manifest.csv (path, identity[, group])",
                      code="no_manifest")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"path", "identity"} <= set(rows[0]):
        raise Refused(f"{manifest}: the columns path and identity are required", code="bad_manifest")
    return [Labelled(Path(folder) / r["path"], r["identity"], r.get("group") or "")
            for r in rows if r["identity"] not in UNLABELLED]


def descriptors(engine: FaceEngine, photos: list[Labelled], limits: Limits,
                advance: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The largest face's descriptor of each photo (zeros if none) and whether a face was found."""
    vectors = np.zeros((len(photos), engine.dim), np.float32)
    usable = np.zeros(len(photos), bool)
    for i, photo in enumerate(photos):
        try:
            faces = engine.faces(decode(photo.path.read_bytes(), limits).pixels)
        except (OSError, DecodeError):
            faces = []
        if faces:
            vectors[i], usable[i] = faces[0].embedding, True
        if advance:
            advance(1)
    return vectors, usable


def measure(vectors: np.ndarray, photos: list[Labelled], usable: np.ndarray) -> dict:
    """The figures for all photos, and per group when the manifest names groups."""
    identities = np.array([p.identity for p in photos])
    result = {"all": metrics.figures(vectors, identities, usable)}
    groups = np.array([p.group for p in photos])
    for group in sorted(set(groups) - {""}):
        chosen = groups == group
        result[group] = metrics.figures(vectors[chosen], identities[chosen], usable[chosen])
    return result


def _plain(value):
    """The report as plain JSON: a figure that cannot be measured (no searches) is None, not NaN."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def manifest_sha256(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()


def evaluate(settings: Settings, db: Database, actor: Actor | None, folder: Path, model: str | None = None,
             advance: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None) -> dict:
    """Runs the model (default: the active one) on the folder, measures it and records the run
    (model, folder, manifest sha256, headline figures) in the audit log. Returns the report."""
    photos = read_manifest(folder)
    if len({p.identity for p in photos}) < 2:
        raise Refused("a labelled folder needs photos of at least two people", code="bad_manifest")
    engine = load_engine(settings, model)
    if on_start:
        on_start(len(photos))
    vectors, usable = descriptors(engine, photos, Limits.from_settings(settings), advance)
    report = {
        "model": engine.model_name,
        "folder": str(Path(folder).resolve()),
        "manifest_sha256": manifest_sha256(folder),
        "people": len({p.identity for p in photos}),
        "figures": _plain(measure(vectors, photos, usable)),
        "meaning": MEANING,
    }
    headline = {k: v["value"] if isinstance(v, dict) and "value" in v else v
                for k, v in report["figures"]["all"].items()}
    with db.session() as session, session.begin():
        audit.record(session, actor, "model.evaluate", model=report["model"], folder=report["folder"],
                     manifest_sha256=report["manifest_sha256"], people=report["people"], figures=headline)
    return report


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, allow_nan=False)


def figure_text(value) -> str:
    """A figure with its interval, for a person; "not measurable" without searches."""
    if isinstance(value, dict):
        if value["value"] is None:
            return "not measurable"
        text = f"{value['value']:.3f}"
        return text if value["low"] is None else f"{text} ({value['low']:.3f}-{value['high']:.3f})"
    return "not measurable" if value is None else f"{value:.3f}"


def to_html(report: dict) -> str:
    """A self-contained page: one table per group of photos."""
    sections = []
    for group, figures in report["figures"].items():
        rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(figure_text(v))}</td></tr>"
                       for name, v in figures.items() if name != "counts")
        counts = ", ".join(f"{html.escape(k)} {v}" for k, v in figures["counts"].items())
        sections.append(f"<h2>{html.escape(group)}</h2><table>{rows}</table><p>{counts}</p>")
    title = f"Evaluation of {html.escape(report['model'])}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{html.escape(report['folder'])} ({report['people']} people, manifest sha256 "
            f"{report['manifest_sha256'][:16]}...)</p>{''.join(sections)}<p>{html.escape(report['meaning'])}</p>"
            "</body></html>")
