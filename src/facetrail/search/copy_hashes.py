"""The copy hashes of every image, held in memory by a long-lived searcher."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from ..store import Image


class CopyHashes:
    """The copy hashes of every image, held in memory by a long-lived searcher: new images are
    read incrementally (ids above the highest held); any other change (deletions, opt-outs that
    cleared a hash) reloads the table."""

    def __init__(self) -> None:
        self.table = (np.empty(0, np.int64), np.empty(0, np.int64))  # (image ids, hashes), replaced whole

    def get(self, session) -> tuple[np.ndarray, np.ndarray]:
        with_hash = Image.copy_hash.is_not(None)
        ids, hashes = self.table
        last = int(ids[-1]) if len(ids) else 0
        new = session.execute(select(Image.id, Image.copy_hash).where(with_hash, Image.id > last)
                              .order_by(Image.id)).all()
        if new:
            ids = np.concatenate([ids, np.array([r.id for r in new], np.int64)])
            hashes = np.concatenate([hashes, np.array([r.copy_hash for r in new], np.int64)])
        if session.scalar(select(func.count()).select_from(Image).where(with_hash)) != len(ids):
            rows = session.execute(select(Image.id, Image.copy_hash).where(with_hash).order_by(Image.id)).all()
            ids = np.array([r.id for r in rows], np.int64)  # something was deleted or cleared
            hashes = np.array([r.copy_hash for r in rows], np.int64)
        self.table = (ids, hashes)
        return self.table
