"""Ingest: find files, decode them safely, find faces, store them."""

from .decode import DecodedImage, DecodeError, Limits, decode
from .files import Item, Skip, walk
from .pipeline import Ingestor, PageRecord, Summary

__all__ = ["DecodeError", "DecodedImage", "Ingestor", "Item", "Limits", "PageRecord", "Skip", "Summary", "decode", "walk"]
