"""The data folder is private: folders 0700, files 0600 (issue 12, item 13).

It holds password and token hashes, face descriptors, crops and the audit log, so no other
local user may read it. `prepare_data_dir` is called by the front doors before anything is
written: it sets the process umask to 077 (so every file facetrail or its libraries create
from then on, including the index files and SQLite's -wal and -shm files, is 0600 and every
folder 0700; worker processes inherit it), creates the data folder 0700 if missing, and
returns a warning for each existing path that others may read (it changes nothing the
operator made: they may have a reason). The database file and media files are also created
0600 explicitly (store/db.py, store/media.py), whatever the umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700

log = logging.getLogger("facetrail.permissions")
log.addHandler(logging.NullHandler())  # the front doors print the warnings; logging may also collect them


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; an existing folder is left as it is."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create an empty file 0600 unless it exists (then it is left as it is)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def sqlite_path(db_url: str) -> Path | None:
    """The file of an SQLite URL (None for PostgreSQL or an in-memory database)."""
    if not db_url.startswith("sqlite") or "///" not in db_url:
        return None
    path = db_url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def loose_paths(data_dir: Path, db_url: str | None = None) -> list[tuple[Path, int]]:
    """Existing paths of the data folder that group or others may use: the folder, the files and
    folders directly in it and in its index/ and media/ folders, and the SQLite database with its
    -wal and -shm files wherever it is. (Not every media file: with the folders private they
    cannot be reached.)"""
    data_dir = Path(data_dir)
    candidates: list[Path] = [data_dir]
    for folder in (data_dir, data_dir / "index", data_dir / "media"):
        if folder.is_dir():
            candidates.extend(sorted(folder.iterdir()))
    database = sqlite_path(db_url) if db_url else None
    if database is not None:
        candidates.extend(Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm"))
    found: dict[Path, int] = {}
    for path in candidates:
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            found[path] = stat.S_IMODE(mode)
    return list(found.items())


def prepare_data_dir(data_dir: Path, db_url: str | None = None) -> list[str]:
    """Make what facetrail writes from now on private, create the data folder 0700 if missing,
    and return (and log) a warning for each existing path others may read or write."""
    os.umask(PRIVATE_UMASK)
    make_private_dir(Path(data_dir))
    database = sqlite_path(db_url) if db_url else None
    if database is not None:
        make_private_dir(database.parent)
    warnings = []
    for path, mode in loose_paths(data_dir, db_url):
        kind = "folder" if path.is_dir() else "file"
        warnings.append(
            f"{kind} {path} has permissions {mode:04o}: other local users may read facetrail's data "
            f"(password and token hashes, face descriptors, the audit log); "
            f"run: chmod {'700' if kind == 'folder' else '600'} '{path}'  (or chmod -R go-rwx '{data_dir}')"
        )
    for warning in warnings:
        log.warning(warning)
    return warnings
