"""What a search gives back: plain data, the same for the CLI's JSON, the API and the pages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..store import Image
from .provenance import by_domain

def similarity(distance: float, match_threshold: float = 0.6) -> float:
    """1 - distance / (2 x the model's match threshold): the threshold maps to 0.5 whatever the
    model's scale (dlib 0.6, SFace 1.14)."""
    return round(min(1.0, max(0.0, 1.0 - distance / (2 * match_threshold))), 4)


@dataclass
class QueryFace:
    index: int
    box: tuple[int, int, int, int]
    score: float
    size: int


@dataclass
class Match:
    face_id: int
    distance: float
    similarity: float
    band: str  # very strong / strong / possible / weak, see search/bands.py
    box: tuple[int, int, int, int]
    image: dict
    verification: dict = field(default_factory=dict)  # state and who confirmed it, in this case
    query_photo: int = 0  # which of the search's photos it matched best (0: the first)
    band_meaning: str = ""  # what the distance means at the index's size (search/bands.meaning)


@dataclass
class SearchResult:
    query: dict
    results: list[Match] = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None  # no_face, no_such_face, or a decoding reason (not_an_image, ...)
    audit_id: int | None = None
    approval: dict | None = None  # policy and state, when the search is under an approval policy
    mode: str = "faces"  # or "copies": copies of the photo itself, by perceptual hash
    copies: list[dict] = field(default_factory=list)  # mode copies: {"distance": bits, "image": {...}}

    def to_dict(self) -> dict:
        results = [asdict(m) for m in self.results]
        data = {
            "mode": self.mode,
            "query": self.query,
            "results": results,
            "by_domain": by_domain(results or self.copies),
            "audit_id": self.audit_id,
            "approval": self.approval,
        }
        if self.mode == "copies":
            data["copies"] = self.copies
        if self.error:
            data["error"] = self.error
            data["error_code"] = self.error_code
        return data


def image_dict(image: Image, appearances: list[dict]) -> dict:
    locations = [loc.location for loc in image.locations]
    return {
        "id": image.id,
        "sha256": image.sha256,
        "location": locations[0] if locations else None,
        "locations": locations,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "first_seen": image.first_seen.isoformat(),
        "last_seen": image.last_seen.isoformat(),
        "appearances": appearances,
    }
