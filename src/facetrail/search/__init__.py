"""Search by photo: the only way to query the index, always audited."""

from ..governance.limits import RateLimited
from .results import Match, SearchResult, similarity
from .rules import SearchRefused, check_request
from .service import Searcher

__all__ = ["Match", "RateLimited", "SearchRefused", "SearchResult", "Searcher", "check_request", "similarity"]
