"""Search by photo."""

from .service import Match, SearchRefused, SearchResult, Searcher, similarity

__all__ = ["Match", "SearchRefused", "SearchResult", "Searcher", "similarity"]
