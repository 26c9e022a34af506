"""The face engine on hard cases: small faces in large photos, tight profile crops."""

from __future__ import annotations

import numpy as np
from PIL import Image

from facetrail.config import Settings
from facetrail.faces import load_engine

from .support import DEV


def _dev(path: str) -> Image.Image:
    return Image.open(DEV / path).convert("RGB")


def test_small_face_in_a_large_photo_is_found_where_it_is(engine):
    portrait = _dev("anthony_hopkins/1.jpg")  # 250x250, the face about 110 px
    small = portrait.resize((150, 150))
    canvas = np.random.default_rng(0).integers(90, 160, size=(3000, 4000, 3), dtype=np.uint8)
    photo = Image.fromarray(canvas)
    photo.paste(small, (2900, 700))
    faces = engine.faces(np.asarray(photo))
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 2900 <= left < right <= 3050 and 700 <= top < bottom <= 850
    # the descriptor is computed on the full-resolution pixels: it matches the original photo's
    original = engine.faces(np.asarray(portrait))[0]
    assert np.linalg.norm(original.embedding - faces[0].embedding) < 0.4


def test_tight_profile_crops_are_found_with_the_cnn_fallback(engine):
    crop = np.asarray(_dev("bbt_leonard/7.png"))  # 150x150, head turned away
    faces = engine.faces(crop)
    assert len(faces) == 1 and faces[0].detector == "cnn"
    hog_only = load_engine(Settings(cnn_fallback_max_side=0))
    assert hog_only.faces(crop) == []


def test_faces_carry_box_landmarks_score_and_size(engine):
    face = engine.faces(np.asarray(_dev("will_smith/1.png")))[0]
    assert len(face.landmarks) == 5
    assert face.size >= 40 and face.score > 0
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32


def test_several_faces_are_returned_largest_first(engine):
    big = _dev("anthony_hopkins/1.jpg")
    small = _dev("bill_gates/1.jpg")
    small.thumbnail((160, 160))
    photo = Image.new("RGB", (big.width + small.width + 40, big.height), "white")
    photo.paste(small, (0, 0))
    photo.paste(big, (small.width + 40, 0))
    faces = engine.faces(np.asarray(photo))
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].box[0] > small.width


def test_the_level_limited_detector_is_dlibs_own_on_the_levels_it_scans():
    import dlib

    from facetrail.faces.dlib_backend import _scanning_levels

    photo = np.asarray(_dev("anthony_hopkins/1.jpg").convert("L").resize((500, 500)))
    frontal = dlib.get_frontal_face_detector()
    original = frontal.run(photo, 0, 0.0)
    unlimited = _scanning_levels(frontal, 1000).run(photo, 0, 0.0)  # 1000: dlib's own default
    assert [(r, round(s, 6)) for r, s in zip(original[0], original[1])] == [
        (r, round(s, 6)) for r, s in zip(unlimited[0], unlimited[1])
    ]
    assert len(original[0]) == 1
    # the face (~220 px here) needs the pyramid's lower levels: the two largest levels miss it
    assert len(_scanning_levels(frontal, 2).run(photo, 0, 0.0)[0]) == 0


def test_the_cached_frontal_detector_is_dlibs_own(tmp_path):
    import dlib

    from facetrail.faces.dlib_backend import cached_frontal_detector

    photo = np.asarray(_dev("anthony_hopkins/1.jpg").convert("L"))
    path = tmp_path / "frontal.svm"
    built = cached_frontal_detector(path)  # built, then saved
    assert path.stat().st_size > 100_000
    loaded = cached_frontal_detector(path)
    path.write_bytes(b"damaged")
    rebuilt = cached_frontal_detector(path)
    expected = dlib.get_frontal_face_detector().run(photo, 0, -0.5)
    assert len(expected[0]) >= 1
    for detector in (built, loaded, rebuilt):
        found = detector.run(photo, 0, -0.5)
        assert list(found[0]) == list(expected[0]) and np.allclose(found[1], expected[1])
    assert path.stat().st_size > 100_000  # the damaged file was replaced
