"""The JSON API with real photos: faces, search (same results as the CLI), errors, media, stats."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.web import create_app

from .support import SEARCH_ARGS, SEARCH_FORM, as_user, cli_base, login, pair_photo, photo_of, png_bomb, upload


@pytest.fixture(scope="module")
def client(dev_index):
    """An API client with an investigator's token."""
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(dev_index.settings), headers=headers) as client:
        yield client


def test_faces_lists_every_face_with_a_crop(client, dev_images):
    response = client.post("/api/v1/faces", files=upload(pair_photo(dev_images)))
    assert response.status_code == 200
    faces = response.json()["faces"]
    assert [f["index"] for f in faces] == [0, 1]
    assert faces[0]["box"][0] < faces[1]["box"][0]  # the larger, left face first
    for f in faces:
        assert f["crop_url"].startswith("data:image/jpeg;base64,")


def test_search_returns_the_same_results_as_the_cli(client, dev_images, dev_index, tmp_path):
    photo = photo_of(dev_images, "keanu_reeves", 2)
    api = client.post("/api/v1/search", files=upload(photo.read_bytes()), data={**SEARCH_FORM, "top_k": "5"})
    assert api.status_code == 200
    body = api.json()
    runner = CliRunner()
    cli_result = runner.invoke(
        cli, [*cli_base(dev_index.settings), *as_user(dev_index.settings, "ivan"), "search", str(photo), *SEARCH_ARGS,
              "--json", "--top-k", "5"],
    )
    from_cli = json.loads(cli_result.stdout)
    assert [(r["face_id"], r["distance"], r["image"]["location"]) for r in body["results"]] == [
        (r["face_id"], r["distance"], r["image"]["location"]) for r in from_cli["results"]
    ]
    assert body["query"]["faces"] == from_cli["query"]["faces"]
    assert all("keanu_reeves" in r["image"]["location"] for r in body["results"][:3])
    assert body["audit_id"] != from_cli["audit_id"]


def test_search_the_second_face_finds_that_person(client, dev_images):
    response = client.post(
        "/api/v1/search", files=upload(pair_photo(dev_images)), data={**SEARCH_FORM, "face": "1"}
    )
    body = response.json()
    assert body["query"]["selected"] == 1
    assert "bill_gates" in body["results"][0]["image"]["location"]


def test_a_large_phone_photo_is_searched_with_boxes_in_its_own_pixels(client, dev_images):
    """A 12 MP photo is decoded at half size for speed; its faces are still given in its pixels
    and the search finds the same person as the small photo does."""
    small = Image.open(io.BytesIO(pair_photo(dev_images)))
    factor = 4032 / small.width
    large = small.resize((4032, round(small.height * factor)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=92)
    big = client.post("/api/v1/faces", files=upload(buffer.getvalue())).json()
    little = client.post("/api/v1/faces", files=upload(pair_photo(dev_images))).json()
    assert (big["width"], big["height"]) == large.size and len(big["faces"]) == len(little["faces"]) == 2
    for b, s in zip(big["faces"], little["faces"]):
        side = (s["box"][2] - s["box"][0]) * factor  # HOG boxes vary by ~10% between scales; half size would be 50% off
        assert all(abs(v - w * factor) <= 0.15 * side for v, w in zip(b["box"], s["box"]))
    found = client.post("/api/v1/search", files=upload(buffer.getvalue()), data={**SEARCH_FORM, "face": "1"}).json()
    assert found["query"]["faces"][1]["box"] == big["faces"][1]["box"]
    assert "bill_gates" in found["results"][0]["image"]["location"]


def test_result_media_are_served_by_id(client, dev_images):
    body = client.post(
        "/api/v1/search", files=upload(photo_of(dev_images, "madonna").read_bytes()), data=SEARCH_FORM
    ).json()
    first = body["results"][0]
    search = f"/api/v1/searches/{body['audit_id']}"
    for url in (first["crop_url"], first["thumb_url"]):
        assert url.startswith(search + "/") and "/work/" not in url
        media = client.get(url)
        assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(media.content)).format == "JPEG"
    assert client.get(f"{search}/faces/999999.jpg").status_code == 404
    assert client.get(f"{search}/images/..%2F..%2Fetc%2Fpasswd.jpg").status_code in (404, 422)


@pytest.mark.parametrize(
    ("data", "form", "status", "code"),
    [
        (b"just some text\n" * 5, SEARCH_FORM, 400, "not_an_image"),
        (None, {**SEARCH_FORM, "purpose": ""}, 422, "purpose_required"),
        (None, {**SEARCH_FORM, "purpose": "curiosity"}, 422, "purpose_required"),
        (None, {**SEARCH_FORM, "justification": "  "}, 422, "justification_required"),
        (None, {**SEARCH_FORM, "case_ref": ""}, 422, "case_ref_required"),
        ("faceless", SEARCH_FORM, 422, "no_face"),
        ("bomb", SEARCH_FORM, 413, "too_many_pixels"),
        (None, {**SEARCH_FORM, "face": "5"}, 422, "no_such_face"),
    ],
)
def test_search_errors_are_clear(client, dev_images, data, form, status, code):
    if data is None:
        data = photo_of(dev_images, "madonna").read_bytes()
    elif data == "faceless":
        data = next(d.path for d in dev_images if d.identity == "none").read_bytes()
    elif data == "bomb":
        data = png_bomb()
    response = client.post("/api/v1/search", files=upload(data), data=form)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert len(response.json()["detail"]) > 10


def test_uploads_over_the_limit_are_refused(dev_index, dev_images):
    settings = dev_index.settings.model_copy(update={"upload_max_bytes": 10_000})
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(settings), headers=headers) as small:
        data = photo_of(dev_images, "anthony_hopkins").read_bytes()
        assert len(data) > 10_000
        response = small.post("/api/v1/search", files=upload(data), data=SEARCH_FORM)
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_stats_health_and_openapi(client, dev_index):
    stats = client.get("/api/v1/stats").json()
    assert stats["images"] == dev_index.summary.images
    assert stats["faces"] == stats["index"]["size"] == dev_index.summary.faces
    assert client.get("/healthz").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/faces", "/api/v1/search", "/api/v1/stats", "/healthz"} <= set(paths)


def test_page_has_a_strict_content_security_policy_and_no_inline_script(client, dev_index):
    login(client, "ivan")
    response = client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.text
    assert '<label for="purpose">' in html and 'id="image"' in html and 'id="case-ref"' in html
    assert html.count("<script") == html.count("<script src=")
    assert "http://" not in html and "https://" not in html  # no third-party assets
