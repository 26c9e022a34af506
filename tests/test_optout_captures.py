"""An opt-out reaches the crawl captures (ingest/capture.py): the WARC records keep the original
photos, so the images an opt-out deletes or hides a face of are dropped from them too, and other
people's stay."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.ingest import capture
from facetrail.store import Database, Source
from facetrail.web import create_app

from .support import Route, add_accounts, as_user, cli_base, serve

LEGAL = "press photos published by the test site, indexed for source verification"


def test_an_opt_out_drops_the_captures_of_their_images_and_keeps_the_others(settings, dev_images, tmp_path,
                                                                           monkeypatch):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    add_accounts(db)
    photos = {who: [d.path.read_bytes() for d in dev_images if d.identity == who] for who in ("madonna", "tom_hanks")}
    served = {f"/img/{who}-{n}.jpg": photos[who][n] for who in photos for n in range(3)}
    with serve("") as (web,):
        web.routes.update({path: Route.image(data) for path, data in served.items()})
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"{web.url(path)}\n" for path in served))
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        done = CliRunner().invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "ingest", "urls", str(listing),
                                        "--source", "list", "--legal-basis", LEGAL, "--workers", "1"])
        assert done.exit_code == 0, done.output
        urls = {path: web.url(path) for path in served}
    with db.session() as session:
        source = session.query(Source).filter_by(name="list").one().id
    assert all(len(kept) == 1 for kept in capture.find(settings, source, urls.values()).values())

    with TestClient(create_app(settings)) as client:
        sent = [("image", (f"m{n}.jpg", photos["madonna"][n])) for n in (5, 6, 7)]  # photos never indexed
        assert client.post("/api/v1/opt-out", files=sent, data={"statement": "yes"}).status_code == 200
    kept = capture.find(settings, source, urls.values())
    assert [path for path in served if kept[urls[path]]] == [f"/img/tom_hanks-{n}.jpg" for n in range(3)]

    # later, the site publishes a new photo of each: hers is not kept either
    later = {"/img/madonna-new.jpg": photos["madonna"][3], "/img/tom_hanks-new.jpg": photos["tom_hanks"][3]}
    with serve("") as (web,):
        web.routes.update({path: Route.image(data) for path, data in later.items()})
        listing.write_text("".join(f"{web.url(path)}\n" for path in later))
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        done = CliRunner().invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "ingest", "urls", str(listing),
                                        "--source", "list", "--workers", "1"])
        assert done.exit_code == 0, done.output
        new_urls = {path: web.url(path) for path in later}
    assert "1 faces matching an opt-out were left out" in done.output
    kept = capture.find(settings, source, new_urls.values())
    assert [path for path in later if kept[new_urls[path]]] == ["/img/tom_hanks-new.jpg"]
