"""End to end in real headless Chromium: upload a two-face photo, pick the second face,
give a purpose, search, and see that person; then the error for a text file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .support import PASSWORD, ROOT, cli_base, open_case, pair_photo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots for a reviewer to look at (not committed; .gitignore): FACETRAIL_TEST_ARTIFACTS or ./test-artifacts
ARTIFACTS = Path(os.environ.get("FACETRAIL_TEST_ARTIFACTS") or ROOT / "test-artifacts")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def start_server(settings, env=None):
    """`facetrail serve` on a free loopback port; returns (url, process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "facetrail", *cli_base(settings), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("the server did not start")


def needs_chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs the Debian package)")
        pytest.skip("chromium is not installed: apt-get install chromium")


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )


def sign_in(page, url, username):
    page.goto(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


@pytest.fixture(scope="module")
def server(dev_index):
    needs_chromium()
    for purpose in ("source-verification", "authorised-investigation"):
        open_case(dev_index.db, f"E2E-{purpose}", purpose=purpose)  # the cases the searches name
    url, process = start_server(dev_index.settings)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    needs_chromium()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(server, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{server}/")
    assert page.url.endswith("/login")  # signed out: the search page sends you to sign in
    sign_in(page, server, "ivan")
    yield page
    page.close()


def fill_reasons(page, purpose="source-verification"):
    page.select_option("#purpose", purpose)
    page.fill("#justification", "e2e test: find the second person")
    page.fill("#case-ref", f"E2E-{purpose}")


def test_pick_the_second_face_and_find_that_person(page, server, dev_images, tmp_path):
    photo = tmp_path / "two-people.jpg"
    photo.write_bytes(pair_photo(dev_images, "anthony_hopkins", "bill_gates"))
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server)

    page.set_input_files("#image", str(photo))
    boxes = page.locator(".face-box")
    boxes.nth(1).wait_for()
    assert boxes.count() == 2
    assert boxes.nth(0).get_attribute("aria-pressed") == "true"  # the largest is preselected
    boxes.nth(1).click()
    assert boxes.nth(1).get_attribute("aria-pressed") == "true"
    assert boxes.nth(0).get_attribute("aria-pressed") == "false"

    page.click("#submit")  # no purpose yet: refused in the page
    assert "purpose is required" in page.locator("#status").inner_text()
    fill_reasons(page)
    page.click("#submit")
    cards = page.locator("#grid .card")
    cards.first.wait_for()
    locations = [text for text in page.locator("#grid .place").all_inner_texts()]
    assert locations and all("bill_gates" in text for text in locations[:3]), locations
    assert "audit entry" in page.locator("#status").inner_text()
    page.wait_for_function("() => document.querySelector('#grid .card img').naturalWidth > 0")  # crops load
    page.locator("#grid .card .verify button:not(.compare)").first.click()  # confirm the top match
    page.wait_for_function("() => document.querySelector('#grid .verify span').textContent.includes('Confirmed by')")
    assert "needs a second person" in page.locator("#grid .verify span").first.inner_text()
    assert screenshot(page, "results").stat().st_size > 10_000
    assert errors == []


def test_a_text_file_gets_a_clear_error(page, server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo at all\n" * 20)
    page.goto(server)
    page.set_input_files("#image", str(text))
    status = page.locator("#status.error")
    status.wait_for()
    assert "not an image" in status.inner_text()
    assert page.locator("#submit").is_disabled()


def test_keyboard_and_phone_width(page, server, dev_images, tmp_path):
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server)
    photo = tmp_path / "one.png"
    photo.write_bytes([d for d in dev_images if d.identity == "madonna"][0].path.read_bytes())
    page.set_input_files("#image", str(photo))
    page.locator(".face-box").first.wait_for()
    page.focus("#purpose")
    page.keyboard.press("ArrowDown")  # the first purpose
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard only")
    page.keyboard.press("Tab")
    page.keyboard.type("E2E-source-verification")  # an open case of ivan's, for the first purpose
    page.keyboard.press("Enter")  # submits the form
    page.locator("#grid .card").first.wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing overflows sideways on a phone
    screenshot(page, "phone")


def test_a_search_held_for_approval_is_approved_by_a_second_user(browser, dev_index, dev_images, tmp_path):
    """Login, search (results withheld under prior approval), a supervisor approves, results appear."""
    url, process = start_server(dev_index.settings, {"FACETRAIL_APPROVAL_POLICY": '{"investigator": "prior"}'})
    photo = tmp_path / "query.png"
    photo.write_bytes([d for d in dev_images if d.identity == "hugh_laurie"][0].path.read_bytes())
    try:
        investigator = browser.new_context().new_page()
        sign_in(investigator, url, "iris")
        investigator.set_input_files("#image", str(photo))
        investigator.locator(".face-box").first.wait_for()
        fill_reasons(investigator, "authorised-investigation")
        investigator.click("#submit")
        investigator.locator("#check").wait_for()
        status = investigator.locator("#status").inner_text()
        assert "withheld until a supervisor approves" in status
        assert investigator.locator("#results").is_hidden()
        search_id = status.split("(search ")[1].split(")")[0]

        supervisor = browser.new_context().new_page()  # a second person, in their own session
        sign_in(supervisor, url, "sue")
        supervisor.click("text=Searches waiting for your decision")
        item = supervisor.locator(".queue-item", has_text=f"Search {search_id} by iris")
        item.locator("input[name=reason]").fill("case file checked")
        item.locator("button[value=approve]").click()
        assert f"Search {search_id} approved" in supervisor.locator(".status").inner_text()
        screenshot(supervisor, "approvals")

        investigator.click("#check")
        investigator.locator("#grid .card").first.wait_for()
        locations = investigator.locator("#grid .place").all_inner_texts()
        assert locations and all("hugh_laurie" in text for text in locations[:2]), locations
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_find_copies_of_a_photo(page, server, dev_images, tmp_path):
    from PIL import Image, ImageOps

    original = [d for d in dev_images if d.identity == "madonna"][1].path
    copy = tmp_path / "mirrored.jpg"
    ImageOps.mirror(ImageOps.exif_transpose(Image.open(original)).convert("RGB")).save(copy, quality=70)
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server)
    page.set_input_files("#image", str(copy))
    page.locator(".face-box").first.wait_for()
    fill_reasons(page)
    page.click("#copies")
    page.locator("#grid .card").first.wait_for()
    assert page.locator("#results-title").inner_text() == "Copies of this photo"
    assert "madonna" in page.locator("#grid .appearances").first.inner_text()
    assert "bits apart" in page.locator("#grid .band").first.inner_text()
    page.wait_for_function("() => document.querySelector('#grid .card img').naturalWidth > 0")  # thumbnails load
    assert errors == []


def test_results_are_grouped_by_site_and_compared_side_by_side_from_the_keyboard(page, server, browser, dev_images,
                                                                                 tmp_path):
    """Each result shows its image with the face marked, its site and page first and the band in
    words; results are grouped by site and page; the keyboard moves between results and opens the
    comparison, where the match is confirmed and the card shows it."""
    photo = tmp_path / "query.png"
    photo.write_bytes([d for d in dev_images if d.identity == "zhao_wei"][0].path.read_bytes())
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto(server)
    page.set_input_files("#image", str(photo))
    page.locator(".face-box").first.wait_for()
    fill_reasons(page)
    page.click("#submit")
    first = page.locator("#grid li.result").first
    first.wait_for()
    assert page.locator("#grid .group h3").count() >= 1
    assert first.locator(".face-mark").count() == 1  # the face is marked on the image
    assert first.locator(".band").inner_text().startswith("#1 · ") and "match" in first.locator(".band").inner_text()
    assert first.locator(".seen").count() == 1 and "First seen" in first.locator(".seen").inner_text()
    assert first.locator(".meaning").inner_text().startswith("in an index of")  # the band at this size
    page.wait_for_function("() => document.querySelector('#grid li.result .shot img').naturalWidth > 0")
    screenshot(page, "results-grouped")

    first.focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.rank") == "2"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")  # compare the first result
    dialog = page.locator("#compare")
    dialog.wait_for()
    assert dialog.locator("canvas.face-large").count() == 1  # the query face, large
    page.wait_for_function("() => document.querySelector('#compare img.face-large').naturalWidth > 0")
    assert "zhao_wei" in dialog.locator(".provenance").nth(1).inner_text()
    screenshot(page, "compare")
    dialog.locator("#compare-actions button").click()  # confirm the match here
    page.wait_for_function("() => document.querySelector('#compare-actions span').textContent.includes('Confirmed by')")
    page.keyboard.press("Escape")
    assert dialog.is_hidden()
    assert page.evaluate("document.activeElement.dataset.rank") == "1"  # focus returns to the card
    assert "Confirmed by ivan" in first.locator(".verify span").inner_text()
    assert errors == []

    # a second person (a supervisor, in a browser of their own) opens the search and verifies the match
    search_id = page.locator("#status").inner_text().split("audit entry ")[1].split(")")[0]
    supervisor = browser.new_context().new_page()
    sign_in(supervisor, server, "sue")
    supervisor.goto(f"{server}/searches/{search_id}")
    card = supervisor.locator("#grid li.result").first
    card.wait_for()
    assert "Confirmed by ivan" in card.locator(".verify span").inner_text()
    card.locator("button.compare").click()
    assert "not kept" in supervisor.locator("#compare .provenance").first.inner_text()
    supervisor.locator("#compare-actions button").click()
    supervisor.wait_for_function(
        "() => document.querySelector('#compare-actions span').textContent.includes('Verified by')")
    screenshot(supervisor, "verified")
    supervisor.keyboard.press("Escape")
    assert card.locator(".verify span").inner_text() == "Verified by ivan and sue"

    # the supervisor downloads the evidence package of this search; it verifies offline
    from facetrail.search.wacz import verify

    with supervisor.expect_download() as download:
        supervisor.click("form.evidence button[type=submit]")
    package = tmp_path / download.value.suggested_filename
    download.value.save_as(package)
    assert package.suffix == ".wacz"
    checks = verify(package)
    assert checks and all(check.ok for check in checks), [c.line() for c in checks if not c.ok]
    supervisor.context.close()


def test_a_supervisor_opens_a_case_and_adds_a_member_in_the_browser(browser, server):
    supervisor = browser.new_context().new_page()
    errors = []
    supervisor.on("console", lambda message: message.type == "error" and errors.append(message.text))
    sign_in(supervisor, server, "sue")
    supervisor.click("text=Cases")
    supervisor.fill("#ref", "BROWSER-1")
    supervisor.fill("#title", "Impersonation accounts")
    supervisor.select_option("#purpose", "trust-and-safety")
    supervisor.fill("#authority", "Head of trust and safety")
    supervisor.check("input[name=urgent]")
    supervisor.fill("#expires_on", "2099-01-01")  # beyond a year: refused with the reason, nothing lost
    supervisor.click("text=Open the case")
    assert "at most" in supervisor.locator(".status.error").inner_text()
    assert supervisor.input_value("#title") == "Impersonation accounts"  # what was typed is kept
    assert supervisor.input_value("#purpose") == "trust-and-safety" and supervisor.is_checked("input[name=urgent]")
    supervisor.evaluate("document.querySelector('#expires_on').valueAsDate = new Date(Date.now() + 30 * 864e5)")
    supervisor.click("text=Open the case")
    supervisor.wait_for_url(f"{server}/cases/*")
    assert "authorisation due by" in supervisor.locator(".record").inner_text()
    supervisor.fill("#username", "iris")
    supervisor.click("text=Add member")
    assert "iris added" in supervisor.locator(".status").inner_text()
    assert "add member" in supervisor.locator(".case-lines").inner_text()
    screenshot(supervisor, "case")
    supervisor.click("text=All cases")
    assert "BROWSER-1" in supervisor.locator("table.cases").inner_text()
    assert [e for e in errors if "status of 422" not in e] == []  # the refused form answered 422, on purpose
    supervisor.context.close()


def test_one_search_with_several_photos_of_the_person(page, server, dev_images, tmp_path):
    """Photos added to the same search before submitting: one without a face is turned away with
    the reason; the results say which photo each matched."""
    from .support import image_bytes

    paths = [d.path for d in dev_images if d.identity == "bill_gates"][:3]
    blank = tmp_path / "blank.png"
    blank.write_bytes(image_bytes("white", "PNG", (64, 64)))
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server)
    page.set_input_files("#image", str(paths[0]))
    page.locator(".face-box").first.wait_for()
    page.set_input_files("#more-photos", [str(p) for p in paths[1:]])
    page.locator("#extra-list li").nth(1).wait_for()
    page.set_input_files("#more-photos", str(blank))
    page.locator("#status.error").wait_for()
    assert "no face" in page.locator("#status").inner_text()
    assert page.locator("#extra-list li").count() == 2
    fill_reasons(page)
    page.click("#submit")
    page.locator("#grid li.result").first.wait_for()
    matched = {text.split("matched photo ")[1] for text in page.locator("#grid .band").all_inner_texts()}
    assert matched <= {"1", "2", "3"} and len(matched) >= 2
    screenshot(page, "several-photos")
    assert [e for e in errors if "status of 4" not in e] == []
