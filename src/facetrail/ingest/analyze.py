"""The per-image work done in the process pool: decode, find and embed faces. Plain data out."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from ..images.copies import fingerprint
from ..faces import Face, FaceEngine, load_engine
from ..images.previews import make_crop, make_thumbnail
from ..images.decode import DecodeError, Limits, decode


@dataclass(frozen=True)
class Analysis:
    """What one image holds, or why it could not be used (`error` is a reason code)."""

    sha256: str = ""
    bytes: int = 0
    format: str = ""
    width: int = 0
    height: int = 0
    faces: list[Face] = field(default_factory=list)
    model: str = ""
    thumbnail: bytes = b""  # JPEG, for the web app
    crops: list[bytes] = field(default_factory=list)  # one JPEG per face, same order
    copy_hash: int | None = None  # perceptual hash for copy search (copies.py)
    error: str | None = None
    message: str = ""


def analyze(engine: FaceEngine, data: bytes, limits: Limits) -> Analysis:
    try:
        image = decode(data, limits)
    except DecodeError as exc:
        return Analysis(error=exc.reason, message=str(exc))
    found = engine.faces(image.pixels)
    # A large image may be decoded reduced (the decode budget): crops come from the pixels,
    # boxes are kept in the image's own coordinates.
    faces = [f.scaled(1 / image.scale) for f in found] if image.scale != 1.0 else found
    return Analysis(
        sha256=image.sha256,
        bytes=image.bytes,
        format=image.format,
        width=image.width,
        height=image.height,
        faces=faces,
        model=engine.model_name,
        thumbnail=make_thumbnail(image.pixels),
        crops=[make_crop(image.pixels, f.box) for f in found],
        copy_hash=fingerprint(image.pixels).hashes[0],
    )


# One engine per worker process, loaded once by the pool initializer.
_engine: FaceEngine | None = None
_limits = Limits()


def init_worker(settings: Settings) -> None:
    global _engine, _limits
    _engine = load_engine(settings)
    _limits = Limits.from_settings(settings)


def analyze_in_worker(data: bytes) -> Analysis:
    assert _engine is not None, "init_worker was not called"
    try:
        return analyze(_engine, data, _limits)
    except Exception as exc:  # noqa: BLE001 - one bad image must never stop the batch
        return Analysis(error="failed", message=f"{type(exc).__name__}: {exc}")
