"""Find the files to ingest under the paths an operator names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileEntry:
    path: Path  # absolute
    size: int
    mtime_ns: int

    @property
    def location(self) -> str:
        return str(self.path)


def walk(paths: list[Path]) -> Iterator[FileEntry]:
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


def _entry(path: Path) -> FileEntry:
    stat = path.stat()
    return FileEntry(path, stat.st_size, stat.st_mtime_ns)
