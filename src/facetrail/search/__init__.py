"""Search by photo."""

from ..governance.limits import RateLimited
from .service import Match, SearchRefused, SearchResult, Searcher, similarity

__all__ = ["Match", "RateLimited", "SearchRefused", "SearchResult", "Searcher", "similarity"]
