"""What ingest consumes: `Item`s (a file or fetched bytes, and where it was found); `walk` makes
them from the folders an operator names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One file to ingest: its location (a path or URL) and its bytes, on disk (`path`) or fetched
    (`data`). `status` is the HTTP status of a fetched image; `seen` the capture date of an
    archived one (default: now)."""

    location: str
    size: int
    mtime_ns: int = 0
    path: Path | None = None
    data: bytes | None = None
    status: int | None = None
    seen: datetime | None = None

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()


@dataclass(frozen=True)
class Skip:
    """A URL the fetcher or crawler did not fetch or index, and why (for the summary)."""

    location: str
    reason: str
    message: str
    status: int | None = None  # the HTTP status, for reason http_status


def walk(paths: list[Path]) -> Iterator[Item]:
    """Regular files under `paths` (recursively, sorted, hidden names skipped, symlinks not followed)."""
    for root in paths:
        root = Path(root).absolute()
        if root.is_file():
            yield _entry(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"no such file or folder: {root}")
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    yield _entry(path)


def _entry(path: Path) -> Item:
    stat = path.stat()
    return Item(str(path), stat.st_size, stat.st_mtime_ns, path=path)
