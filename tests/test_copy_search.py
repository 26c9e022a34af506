"""Copy search as a user meets it: `facetrail search --mode copies` and `mode=copies` in the API find
altered copies of a photo (not other photos of the person), are audited like any search, and never
lead to the photos of a person who opted out."""

from __future__ import annotations

import io
import json

from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageOps
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.store import AuditEntry
from facetrail.web import create_app

from .support import SEARCH_ARGS, SEARCH_FORM, as_user, cli_base

runner = CliRunner()


def altered(path, tmp_path) -> bytes:
    """Mirrored, cropped 6% on two sides, darker, halved and recompressed."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    image = ImageOps.mirror(image).crop((int(w * 0.06), 0, w, int(h * 0.94)))
    image = ImageEnhance.Brightness(image).enhance(0.8).resize((image.width // 2, image.height // 2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60)
    return out.getvalue()


def test_cli_finds_altered_copies_and_records_the_search(dev_index, dev_images, tmp_path):
    original = [d for d in dev_images if d.identity == "madonna"][0].path
    query = tmp_path / "copy.jpg"
    query.write_bytes(altered(original, tmp_path))
    result = runner.invoke(cli, [*cli_base(dev_index.settings), *as_user(dev_index.settings, "ivan"), "search", str(query),
                                 *SEARCH_ARGS, "--mode", "copies", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["mode"] == "copies" and body["copies"], body
    best = body["copies"][0]
    assert best["image"]["location"] == str(original) and best["distance"] <= 6
    madonna = {str(d.path) for d in dev_images if d.identity == "madonna"}
    assert not any(c["image"]["location"] in madonna - {str(original)} for c in body["copies"])
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, body["audit_id"])
    assert entry.action == "search" and entry.details["mode"] == "copies" and entry.purpose == SEARCH_ARGS[1]
    assert entry.details["copies"][0][0] == best["image"]["id"]
    text = runner.invoke(cli, [*cli_base(dev_index.settings), *as_user(dev_index.settings, "ivan"), "search", str(query),
                               *SEARCH_ARGS, "--mode", "copies"], catch_exceptions=False)
    words = " ".join(text.stdout.split())  # the heading may wrap at any space, by the path's length
    assert text.exit_code == 0 and "copies of this photo" in words and "madonna" in text.stdout
    refused = runner.invoke(cli, [*cli_base(dev_index.settings), *as_user(dev_index.settings, "ivan"), "search", str(query),
                                  "--mode", "copies"], catch_exceptions=False)
    assert refused.exit_code == 2 and "purpose" in refused.output


def test_api_copies_with_thumbnails(dev_index, dev_images, tmp_path):
    original = [d for d in dev_images if d.identity == "bill_gates"][2].path
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(dev_index.settings), headers=headers) as client:
        response = client.post("/api/v1/search", data={**SEARCH_FORM, "mode": "copies"},
                               files={"image": ("q.jpg", altered(original, tmp_path), "image/jpeg")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["copies"][0]["image"]["location"] == str(original)
        thumb = client.get(body["copies"][0]["thumb_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        nothing = client.post("/api/v1/search", data={**SEARCH_FORM, "mode": "copies"},
                              files={"image": ("q.png", _noise(), "image/png")})
        assert nothing.status_code == 200 and nothing.json()["copies"] == []
        assert client.post("/api/v1/search", data={**SEARCH_FORM, "mode": "bogus"},
                           files={"image": ("q.png", _noise(), "image/png")}).status_code == 422
        auditor = {"Authorization": f"Bearer {dev_index.tokens['otto']}"}
        assert client.post("/api/v1/search", data={**SEARCH_FORM, "mode": "copies"}, headers=auditor,
                           files={"image": ("q.png", _noise(), "image/png")}).status_code == 403


def _noise() -> bytes:
    import numpy as np

    pixels = np.random.default_rng(5).integers(0, 255, (200, 300, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_opted_out_photos_are_not_found_as_copies(tmp_path, dev_images):
    import shutil

    from facetrail.faces import load_engine
    from facetrail.index import open_index
    from facetrail.ingest import walk
    from facetrail.search import Searcher
    from facetrail.store import Database, Image as ImageRow

    from .support import add_accounts, folder_ingestor, investigator, settings_for

    folder = tmp_path / "photos"
    folder.mkdir()
    chosen = [d.path for d in dev_images if d.identity == "tom_hanks"][:2]
    for path in chosen:
        shutil.copy(path, folder / path.name)
    settings = settings_for(tmp_path / "data")
    db = Database(settings.db_url)
    folder_ingestor(settings, db, open_index(settings, db), folder).run(walk([folder]))
    add_accounts(db)
    query = altered(chosen[0], tmp_path)
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    args = {"actor": investigator(), "purpose": SEARCH_FORM["purpose"], "justification": "t", "case_ref": "T-1"}
    assert searcher.copies(query, **args).copies
    with TestClient(create_app(settings)) as client:
        selfie = [d.path for d in dev_images if d.identity == "tom_hanks"][5].read_bytes()
        response = client.post("/api/v1/opt-out", files={"image": ("me.jpg", selfie)}, data={"statement": "yes"})
        assert response.status_code == 200, response.text
    assert searcher.copies(query, **args).copies == []
    with db.session() as session:
        assert list(session.scalars(select(ImageRow.copy_hash))) == [None, None]
