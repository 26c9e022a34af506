"""/docs in real headless Chromium (issue 12, item 16): Swagger UI comes from this server (the
`swagger-ui-bundle` package), no request leaves it, and it runs under the app's own CSP (no
inline script), so the API's operations are listed and can be opened."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import sync_playwright

from facetrail.web.app import CSP

from .support import settings_for
from .test_browser import launch, needs_chromium, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url, process = start_server(settings_for(tmp_path_factory.mktemp("docs") / "data"))
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_docs_page_is_local_and_has_no_inline_script(server):
    page = httpx.get(f"{server}/docs")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    html = page.text
    assert "<script>" not in html and "cdn" not in html.lower() and "http" not in html.replace(server, "")
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/static/swagger-init.js"):
        assert asset in html
        assert httpx.get(f"{server}{asset}").status_code == 200
    assert httpx.get(f"{server}/docs/assets/index.html").status_code == 404  # only the files the page needs
    assert httpx.get(f"{server}/docs/assets/..%2F..%2F__init__.py").status_code == 404
    assert httpx.get(f"{server}/redoc").status_code == 404


def test_docs_show_the_search_operation_in_a_browser(server):
    needs_chromium()
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{server}/docs")
        search = page.locator(".opblock-summary-path", has_text="/api/v1/search").first
        search.wait_for(timeout=30_000)
        assert page.locator(".info .title").inner_text().startswith("facetrail")
        search.click()
        page.get_by_text("justification", exact=False).first.wait_for(timeout=10_000)  # its form fields
        browser.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems
    assert requests and all(r.startswith((server, "data:")) for r in requests), requests
