"""Search by photo."""

from ..governance.limits import RateLimited
from .service import Match, SearchRefused, SearchResult, Searcher, check_request, similarity

__all__ = ["Match", "RateLimited", "SearchRefused", "SearchResult", "Searcher", "check_request", "similarity"]
