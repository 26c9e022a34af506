"""The decode budget: memory counted from the header before any pixel is decoded; images over it
are reduced within it or refused with a reason (issue 12, item 10). The memory each decode
really takes is measured by bench/hostile.py, not here."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from facetrail.images import DecodeError, Limits, decode
from facetrail.images.decode import working_bytes
from facetrail.ingest.analyze import analyze
from facetrail.web import create_app

from .support import SEARCH_FORM, encode, upload

MB = 1024 * 1024


def float_tiff(width: int = 7999, height: int = 7999) -> bytes:
    """The attack of issue 12: a float TIFF of zeros, deflated to 368 KB, 7999 x 7999 pixels."""
    return encode(Image.new("F", (width, height), 0.0), "TIFF", compression="tiff_adobe_deflate")


@pytest.fixture(scope="module")
def tiff() -> bytes:
    return float_tiff()


@pytest.fixture(scope="module")
def face_photo(dev_images) -> Image.Image:
    return Image.open(next(d.path for d in dev_images if d.identity == "anthony_hopkins")).convert("RGB")


def test_the_368_kb_float_tiff_is_refused_with_a_reason(tiff):
    assert len(tiff) < 400_000
    with pytest.raises(DecodeError) as caught:
        decode(tiff)  # the default budget
    assert caught.value.reason == "too_much_memory"
    message = str(caught.value)
    assert "7999x7999" in message and "TIFF" in message and "128 MB" in message
    assert int(message.split(" needs ")[1].split(" MB")[0]) >= 7999 * 7999 * 4 // MB  # 4 bytes a float


def test_the_float_tiff_through_the_api_is_413_too_much_memory(dev_index, tiff):
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(dev_index.settings), headers=headers) as client:
        for path, form in (("/api/v1/search", SEARCH_FORM), ("/api/v1/faces", {})):
            response = client.post(path, files=upload(tiff, "float.tif"), data=form)
            assert response.status_code == 413, response.text
            assert response.json()["code"] == "too_much_memory"
            assert "too big to decode" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_the_budget_setting_reaches_the_api(dev_index, face_photo):
    """FACETRAIL_DECODE_BUDGET_BYTES: an ordinary PNG over a 1 MB budget is refused by the search."""
    settings = dev_index.settings.model_copy(update={"decode_budget_bytes": MB})
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    data = encode(face_photo.resize((2000, 2000)), "PNG")
    with TestClient(create_app(settings), headers=headers) as client:
        response = client.post("/api/v1/search", files=upload(data, "big.png"), data=SEARCH_FORM)
    assert response.status_code == 413 and response.json()["code"] == "too_much_memory"
    assert "2000x2000" in response.json()["detail"]


def test_within_a_larger_budget_the_float_tiff_decodes_to_8_bit(tiff):
    decoded = decode(tiff, Limits(max_decode_bytes=512 * MB))
    assert decoded.pixels.shape == (7999, 7999, 3) and decoded.pixels.dtype == np.uint8
    assert decoded.scale == 1.0 and not decoded.pixels.any()


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", [0, 32768, 65535], [0, 128, 255]),  # 16 bits: the whole range, not clipped white
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # float 0..1
        ("F", [-1000.0, 0.0, 1000.0], [0, 128, 255]),  # any other range: stretched
        ("I", [0, 100, 255], [0, 100, 255]),  # already 8-bit values: kept
    ],
)
def test_high_depth_images_become_8_bit_over_their_range(mode, values, expected):
    image = Image.new(mode, (3, 1))
    for x, v in enumerate(values):
        image.putpixel((x, 0), v)
    fmt = "PNG" if mode == "I;16" else "TIFF"
    pixels = decode(encode(image, fmt)).pixels
    assert [int(p) for p in pixels[0, :, 0]] == pytest.approx(expected, abs=1)
    assert (pixels[..., 0] == pixels[..., 2]).all()  # grey


def test_a_big_jpeg_is_decoded_reduced_within_the_budget_and_faces_keep_their_place(engine, face_photo):
    """A 6000 x 6000 JPEG needs ~250 MB in full; under a 64 MB budget it is decoded at 1/2 or
    1/4 scale while decoding, and the face is found where it is in the full image."""
    big = face_photo.resize((6000, 6000), Image.Resampling.LANCZOS)
    data = encode(big, "JPEG", quality=90)
    limits = Limits(max_decode_bytes=64 * MB)
    assert working_bytes("JPEG", "RGB", (6000, 6000)) > limits.max_decode_bytes
    decoded = decode(data, limits)
    assert (decoded.width, decoded.height) == (6000, 6000)
    assert decoded.scale in (0.5, 0.25)
    assert working_bytes("JPEG", "RGB", decoded.pixels.shape[1::-1]) <= limits.max_decode_bytes
    small = analyze(engine, encode(face_photo, "JPEG", quality=95), Limits())
    reduced = analyze(engine, data, limits)
    assert reduced.error is None and (reduced.width, reduced.height) == (6000, 6000)
    assert len(reduced.faces) == len(small.faces) >= 1 and len(reduced.crops) == len(reduced.faces)
    factor = 6000 / face_photo.width
    side = (small.faces[0].box[2] - small.faces[0].box[0]) * factor
    assert all(abs(v - w * factor) <= 0.15 * side for v, w in zip(reduced.faces[0].box, small.faces[0].box))


def test_a_png_whose_frame_fits_is_reduced_and_one_whose_frame_does_not_is_refused(face_photo):
    data = encode(face_photo.resize((3000, 3000)), "PNG")  # RGB: 4 bytes a pixel in Pillow = 34 MB frame
    reduced = decode(data, Limits(max_decode_bytes=48 * MB))
    assert (reduced.width, reduced.height) == (3000, 3000) and reduced.scale < 1
    assert working_bytes("PNG", "RGB", (3000, 3000), round(1 / reduced.scale)) <= 48 * MB
    with pytest.raises(DecodeError) as caught:
        decode(data, Limits(max_decode_bytes=16 * MB))
    assert caught.value.reason == "too_much_memory" and "3000x3000 PNG" in str(caught.value)


def test_a_multi_page_tiff_is_counted_and_decoded_by_its_first_page():
    first = Image.new("RGB", (64, 48), "red")
    huge = Image.new("F", (7000, 7000), 0.0)
    data = encode(first, "TIFF", save_all=True, append_images=[huge], compression="tiff_adobe_deflate")
    decoded = decode(data, Limits(max_decode_bytes=8 * MB))
    assert decoded.pixels.shape == (48, 64, 3) and tuple(decoded.pixels[0, 0]) == (255, 0, 0)


def test_webp_counts_libwebps_own_copy():
    """libwebp decodes into its own buffer which Pillow then copies: the budget counts it, so a
    WebP needs more than a PNG of the same size (bench/hostile.py measures both)."""
    assert working_bytes("WEBP", "RGB", (4000, 3000)) > working_bytes("PNG", "RGB", (4000, 3000))
    data = encode(Image.new("RGB", (2000, 2000), "blue"), "WEBP")
    with pytest.raises(DecodeError) as caught:
        decode(data, Limits(max_decode_bytes=working_bytes("PNG", "RGB", (2000, 2000))))
    assert caught.value.reason == "too_much_memory"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_is_applied_as_pillow_does(orientation, fmt):
    rng = np.random.default_rng(orientation)
    image = Image.fromarray(rng.integers(0, 255, (61, 97, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode(data)
    assert (decoded.height, decoded.width) == expected.shape[:2]
    assert np.array_equal(decoded.pixels, expected)
    reduced = decode(data, max_side=20)  # reduced by 4 as it is turned
    assert reduced.pixels.shape[:2] == tuple(-(-s // 4) for s in expected.shape[:2])
