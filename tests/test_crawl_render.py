"""Optional JavaScript rendering (issue 13 item 8): a page whose images exist only once its script
ran is indexed when the source asks for rendering, and the browser (Debian's Chromium) fetches
nothing the crawler itself would refuse: another server, a path robots.txt disallows, a POST, a
WebSocket. Local servers on 127.0.0.1 only."""

from __future__ import annotations

import shutil

import pytest

from .support import Route, image_bytes, serve
from .test_crawl import Guard, fetcher_for, run, scope_of
from .test_crawl import guard as guard  # noqa: PLC0414 - the module's network guard fixture

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")


def _site(c, other) -> None:
    script = f"""
        const img = document.createElement('img');
        img.src = '/img/js.jpg'; img.alt = 'built by a script';
        document.getElementById('app').appendChild(img);
        fetch('{other.url('/leak')}').catch(() => {{}});
        fetch('/private/secret.json').catch(() => {{}});
        fetch('/api/save', {{method: 'POST', body: 'x'}}).catch(() => {{}});
        new Image().src = '{other.url('/pixel.gif')}';
        try {{ new WebSocket('ws://127.0.0.1:{other.port}/socket'); }} catch (e) {{}}
        fetch('/data.json').then(r => r.json()).then(d => {{
          const more = document.createElement('img'); more.src = d.image; more.alt = 'from data';
          document.body.appendChild(more);
        }});"""
    c.routes.update({
        "/robots.txt": Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"),
        "/": Route.html('<title>App</title><div id="app"></div><script src="/app.js"></script>'),
        "/app.js": Route(script.encode(), content_type="application/javascript"),
        "/data.json": Route(b'{"image": "/img/data.jpg"}', content_type="application/json"),
        "/img/js.jpg": Route.image(image_bytes("red")),
        "/img/data.jpg": Route.image(image_bytes("blue")),
    })
    other.routes.update({"/leak": Route.html("leaked"), "/pixel.gif": Route.html("leaked")})


def test_rendered_pages_show_their_scripted_images(guard: Guard) -> None:
    with serve("c.test", "") as (c, other):
        _site(c, other)
        plain = run([c.url("/")], scope_of(c), fetcher_for(guard, c, deadline=15, read_timeout=5))
        rendered = run([c.url("/")], scope_of(c), fetcher_for(guard, c, deadline=15, read_timeout=5),
                       render_js=True)
    assert plain.images == [] and [ref.url for page in plain.pages for ref in page.images] == []
    (page,) = rendered.pages
    assert [(ref.url, ref.alt) for ref in page.images] == [
        (c.url("/img/js.jpg"), "built by a script"), (c.url("/img/data.jpg"), "from data")]
    assert {image.url for image in rendered.images} == {c.url("/img/js.jpg"), c.url("/img/data.jpg")}
    assert other.log == []  # out of scope: never fetched, whether by fetch, an image or a WebSocket
    assert not {"/private/secret.json", "/api/save"} & set(c.paths())  # robots.txt; a POST
    assert c.paths().count("/") == 2  # once per crawl: the browser got the page the fetcher fetched


def test_a_source_declared_with_render_js_is_crawled_rendered(tmp_path, dev_images, monkeypatch) -> None:
    """The option reaches the crawl through `source add --render-js` and `facetrail crawl`."""
    from facetrail.store import Database

    from .support import add_accounts
    from .test_crawl_store import LEGAL, cli

    data = tmp_path / "data"
    data.mkdir()
    add_accounts(Database(f"sqlite:///{data / 'facetrail.db'}"))
    with serve("") as (web,):
        web.routes.update({
            "/": Route.html('<div id="app"></div><script src="/app.js"></script>'),
            "/app.js": Route(b"const i = document.createElement('img'); i.src = '/face.jpg';"
                             b"document.getElementById('app').appendChild(i);",
                             content_type="application/javascript"),
            "/face.jpg": Route.image(dev_images[0].path.read_bytes()),
        })
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(data, "source", "add", "app", "--url", web.url("/"), "--legal-basis", LEGAL, "--render-js",
                   user="ada").exit_code == 0
        crawled = cli(data, "crawl", "app", "--workers", "1")
    assert crawled.exit_code == 0, crawled.output
    assert "1 new images" in crawled.stdout and "/face.jpg" in web.paths()
