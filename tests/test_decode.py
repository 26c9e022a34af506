"""Decoding untrusted bytes: every supported format in, every hostile file out with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facetrail.images import DecodeError, Limits, decode

from .support import encode, png_bomb, write_hostile_files


@pytest.fixture(scope="module")
def photo(dev_images) -> Image.Image:
    return Image.open(next(d.path for d in dev_images if d.identity == "anthony_hopkins")).convert("RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_supported_formats_decode_to_rgb(photo, fmt):
    decoded = decode(encode(photo, fmt))
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == photo.size
    assert decoded.pixels.shape == (photo.height, photo.width, 3)


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode(data).pixels
    assert tuple(pixels[15, 20]) == (255, 0, 0)


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    decoded = decode(encode(photo, "JPEG", exif=exif))
    assert (decoded.width, decoded.height) == (photo.height, photo.width)


def test_hostile_files_each_give_their_reason(tmp_path, photo):
    expected = write_hostile_files(tmp_path, encode(photo, "JPEG"))
    for name, reason in expected.items():
        with pytest.raises(DecodeError) as caught:
            decode((tmp_path / name).read_bytes())
        assert caught.value.reason == reason, (name, str(caught.value))
        assert str(caught.value)  # a message a person can read


def test_bomb_is_refused_before_decoding_pixels():
    with pytest.raises(DecodeError, match="30000x30000"):
        decode(png_bomb(), Limits(max_pixels=64_000_000))


def test_byte_limit(photo):
    data = encode(photo, "PNG")
    with pytest.raises(DecodeError) as caught:
        decode(data, Limits(max_bytes=len(data) - 1))
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_image_is_decoded_reduced_on_request(photo, fmt):
    """decode(max_side=N) for query photos: a whole-factor reduction keeping the long side >= N;
    width and height stay the image's own, upright (EXIF orientation applied)."""
    big = photo.convert("RGB").resize((4000, 3000))
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the upright image is 3000 x 4000
    big.save(buffer, fmt, exif=exif) if fmt == "JPEG" else big.transpose(Image.Transpose.ROTATE_270).save(buffer, fmt)
    full = decode(buffer.getvalue())
    reduced = decode(buffer.getvalue(), max_side=1600)
    assert (full.width, full.height, full.scale, full.pixels.shape) == (3000, 4000, 1.0, (4000, 3000, 3))
    assert (reduced.width, reduced.height, reduced.scale, reduced.pixels.shape) == (3000, 4000, 0.5, (2000, 1500, 3))
    assert decode(buffer.getvalue(), max_side=2500).scale == 1.0  # not twice the size: kept whole
    small = np.asarray(Image.fromarray(full.pixels).reduce(2), float)
    assert np.abs(small - reduced.pixels).mean() < 4  # the same picture
