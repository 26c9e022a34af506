"""Images as plain data: decoding with limits, thumbnails and face crops, copy fingerprints.

Bytes in, arrays and bytes out; nothing here touches the database or the network.
"""

from .decode import DecodedImage, DecodeError, Limits, decode, sniff_format

__all__ = ["DecodeError", "DecodedImage", "Limits", "decode", "sniff_format"]
