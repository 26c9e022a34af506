"""Thumbnails and face crops (made at ingest, see images/previews.py), kept in the data folder.

Files are named by the image's sha256 (and the face's index in it), never by a path the
outside world chose; the web app serves them by database id.
"""

from __future__ import annotations

import os
from pathlib import Path

from .private import FILE_MODE, make_private_dir


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def thumb_path(self, sha256: str) -> Path:
        return self.root / "thumbs" / sha256[:2] / f"{sha256}.jpg"

    def crop_path(self, sha256: str, idx: int) -> Path:
        return self.root / "faces" / sha256[:2] / f"{sha256}-{idx}.jpg"

    def save(self, sha256: str, thumbnail: bytes, crops: list[bytes]) -> None:
        _write(self.thumb_path(sha256), thumbnail)
        for idx, crop in enumerate(crops):
            _write(self.crop_path(sha256, idx), crop)

    def files_by_sha(self) -> dict[str, list[Path]]:
        """Every media file on disk, grouped by the sha256 of the image it belongs to."""
        found: dict[str, list[Path]] = {}
        for path in self.root.glob("*/*/*.jpg"):
            found.setdefault(path.stem.split("-")[0], []).append(path)
        return found

    def delete(self, sha256: str, faces: int) -> None:
        self.thumb_path(sha256).unlink(missing_ok=True)
        for idx in range(faces):
            self.crop_path(sha256, idx).unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    """Write a media file 0600 (in 0700 folders) whatever the umask: crops are faces."""
    if not path.parent.is_dir():
        make_private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, FILE_MODE)  # a .tmp left by a crash keeps its mode: set it again
    os.replace(tmp, path)
