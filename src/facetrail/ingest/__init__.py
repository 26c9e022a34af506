"""Ingest: find files, decode them safely, find faces, store them."""

from .decode import DecodedImage, DecodeError, Limits, decode
from .files import FileEntry, walk
from .pipeline import Ingestor, Summary

__all__ = ["DecodeError", "DecodedImage", "FileEntry", "Ingestor", "Limits", "Summary", "decode", "walk"]
