"""A person's request to take their face out of the index (see governance/optout.py).

The flow both front doors share: the person states that the photo shows them, the largest
face in it is found, every matching face is removed and the descriptor kept so the face is
never indexed again; the photo itself is not kept. The answer is the same whether or not
the face was in the index. Rate limits (per client) are the front door's.
"""

from __future__ import annotations

from ..errors import Refused
from ..governance.optout import opt_out
from ..store.media import MediaStore
from .service import Searcher

RECEIVED = (
    "Thank you. Your request is recorded. Any face in this index that matches the face in your photo "
    "has been removed, and matching faces will not be indexed again."
)


def check_statement(statement: str) -> None:
    """Refused unless the person confirmed the statement ("yes": this is me, remove me).
    Checked before the photo is read."""
    if statement != "yes":
        raise Refused("Please confirm the statement that this is a photo of you.", "statement_required")


def take(searcher: Searcher, media: MediaStore, photo: bytes, contact: str = "") -> None:
    """Remove the face in `photo` (its largest) now and in future, recorded in the audit log.
    Raises DecodeError for a photo that cannot be used, Refused (no_face) without a face."""
    decoded, found = searcher.faces_in(photo)
    del photo, decoded  # the photo is not kept
    if not found:
        raise Refused("No face was found in this photo. Try a clearer, larger photo of your face.", "no_face")
    with searcher.db.session() as session, session.begin():
        opt_out(session, searcher.index, media, found[0].embedding, searcher.settings.match_threshold,
                contact.strip()[:320] or None)
    searcher.index.save()
