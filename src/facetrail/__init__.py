"""facetrail: an accountable, self-hosted face search engine."""

__version__ = "0.1.0"
