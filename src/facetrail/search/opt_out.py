"""A person's request to take their face out of the index (see governance/optout.py).

The flow both front doors share: the person states that the photos show them (1-10 photos;
three or more, from different days and angles, cover their face far better than one), the
largest face in each is found, and their descriptors are kept as one opt-out, by every registered
face model (faces/templates.py: one set per model, so a model switch keeps it; the photos are
not kept). From then on no search returns a matching face. The answer is given then, in a time that
depends on the photos only; the matching faces are removed and hidden afterwards (`finish`),
so the answer is the same, and as quick, whether or not the person was in the index. Rate
limits (per client) are the front door's.
"""

from __future__ import annotations

import numpy as np

from ..errors import Refused
from ..faces.templates import describe_with_each_model
from ..ingest import capture
from ..governance.optout import apply_pending, radii, record
from ..store.media import MediaStore
from .service import Searcher

MAX_PHOTOS = 10
RECEIVED = (
    "Thank you. Your request is recorded. Any face in this index that matches the faces in your photos "
    "is removed, and matching faces will not be shown or indexed again."
)


def check_statement(statement: str) -> None:
    """Refused unless the person confirmed the statement ("yes": this is me, remove me).
    Checked before the photo is read."""
    if statement != "yes":
        raise Refused("Please confirm the statement that this is a photo of you.", "statement_required")


def check_photo_count(count: int) -> None:
    """Refused unless there are 1 to MAX_PHOTOS photos. Checked before any photo is read."""
    if not 1 <= count <= MAX_PHOTOS:
        raise Refused(f"Please send between 1 and {MAX_PHOTOS} photos of your face.", "photo_count")


def take(searcher: Searcher, photos: list[bytes] | bytes, contact: str = "") -> None:
    """Record the opt-out of the person in `photos` (the largest face of each), in the audit log.
    Raises DecodeError for a photo that cannot be used, Refused (no_face) for one without a face:
    then nothing is recorded."""
    photos = [photos] if isinstance(photos, bytes) else list(photos)
    check_photo_count(len(photos))
    vectors, pixels = [], []
    for number, photo in enumerate(photos, 1):
        image, found = searcher.faces_in(photo)
        if not found:
            which = f"photo {number}" if len(photos) > 1 else "this photo"
            raise Refused(f"No face was found in {which}. Try a clearer, larger photo of your face.", "no_face")
        vectors.append(np.asarray(found[0].embedding, np.float32))
        pixels.append(image.pixels)
    model = searcher.engine.model_name
    others = describe_with_each_model(searcher.settings, pixels, skip={model})
    del photos, pixels  # the photos are not kept
    with searcher.db.session() as session, session.begin():
        record(session, np.stack(vectors), contact.strip()[:320] or None, model, others)


def finish(searcher: Searcher, media: MediaStore) -> None:
    """Remove and hide the faces matching every opt-out not yet applied (run after answering), and
    the crawl captures of the images they are in (ingest/capture.py: the original photos)."""
    apply_pending(searcher.db, searcher.index, media, radii(searcher.settings), searcher.engine.model_name,
                  lambda sha256s: capture.forget(searcher.settings, sha256s))
