"""HTTP bodies read in bounded steps: de-chunked (Transfer-Encoding) and decompressed
(Content-Encoding gzip, deflate, br, zstd) at most about `CHUNK` bytes of output at a time, so
a few KB of brotli that hold gigabytes never sit in memory whole. Used for archived responses
(ingest/warc.py)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 64 * 1024


class Unsupported(Exception):
    """A Content-Encoding this module does not decode."""


def blocks(raw: Any) -> Iterator[bytes]:
    while data := raw.read(CHUNK):
        yield data


def dechunk(raw: Any) -> Iterator[bytes]:
    """A chunked (Transfer-Encoding) body, decoded in pieces of at most `CHUNK` bytes. A body that
    is not really chunked (some archivers store it decoded but keep the header) passes as is."""
    while line := raw.readline(1024):
        if not line.strip():
            continue  # the CRLF closing a chunk
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            yield line
            yield from blocks(raw)
            return
        if size == 0:
            return  # trailers, if any, are not needed
        while size > 0 and (data := raw.read(min(size, CHUNK))):
            yield data
            size -= len(data)


def decompress(pieces: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """`pieces` decoded from a Content-Encoding, at most about `CHUNK` bytes of output per step
    (warcio's `content_stream()` inflates a whole block at once, and a few KB of brotli can hold
    gigabytes). A body whose first piece does not decode is passed as is, like warcio does: some
    archivers store bodies decoded but keep the header."""
    if encoding in ("", "identity"):
        yield from pieces
        return
    decoders = _decoders(encoding)
    decoder: Any = None
    for data in pieces:
        if decoder is not None:
            yield from _decode_piece(decoder, data)
        else:
            for make in decoders:
                decoder, produced = make(), False
                try:
                    for out in _decode_piece(decoder, data):
                        produced = produced or bool(out)
                        yield out
                    break
                except Exception:
                    if produced:
                        raise
            else:  # not encoded after all
                yield data
                yield from pieces
                return
        if decoder.is_finished() if hasattr(decoder, "is_finished") else decoder.eof:
            return


def _decoders(encoding: str) -> list[Callable[[], Any]]:
    """Ways to decode a Content-Encoding, to try in turn."""
    if encoding in ("gzip", "x-gzip"):
        return [lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)]
    if encoding == "deflate":  # with the zlib header, as the standard says, or raw as some servers send
        return [zlib.decompressobj, lambda: zlib.decompressobj(-zlib.MAX_WBITS)]
    if encoding == "br":
        import brotli  # a dependency of Scrapy

        return [brotli.Decompressor]
    if encoding == "zstd":
        try:
            from compression.zstd import ZstdDecompressor  # type: ignore[import-not-found]  # Python 3.14
        except ImportError:
            from backports.zstd import ZstdDecompressor  # a dependency of Scrapy before Python 3.14
        return [ZstdDecompressor]
    raise Unsupported(encoding)


def _decode_piece(decoder: Any, data: bytes) -> Iterator[bytes]:
    if hasattr(decoder, "unconsumed_tail"):  # zlib
        while data:
            if out := decoder.decompress(data, CHUNK):
                yield out
            data = b"" if decoder.eof else decoder.unconsumed_tail
    elif hasattr(decoder, "can_accept_more_data"):  # brotli
        yield decoder.process(data, output_buffer_limit=CHUNK)
        while not decoder.can_accept_more_data():
            yield decoder.process(b"", output_buffer_limit=CHUNK)
    else:  # zstd
        yield decoder.decompress(data, CHUNK)
        while not decoder.needs_input and not decoder.eof:
            yield decoder.decompress(b"", CHUNK)


class Stream:
    """A readable stream over pieces of bytes."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces, self._rest = pieces, b""

    def read(self, size: int) -> bytes:
        while not self._rest:
            if (piece := next(self._pieces, None)) is None:
                return b""
            self._rest = piece
        out, self._rest = self._rest[:size], self._rest[size:]
        return out


class Corrupt(Exception):
    """A body that does not decode completely and correctly from its Content-Encoding."""


def decode_strictly(body: bytes, encodings: list[str]) -> Iterator[bytes]:
    """`body` decoded from its Content-Encoding list (applied in order, so undone last first), at
    most about `CHUNK` bytes of output per step; unlike `decompress`, nothing passes as is: any
    decoding error, a stream that ends early (truncated) or bytes after its end raise `Corrupt`
    (`Unsupported` for an unknown encoding). Gzip may hold several members, as the format allows.
    The caller bounds the total output (a bomb is only ever decoded as far as it reads)."""
    pieces: Iterator[bytes] = iter([body])
    for encoding in reversed([e.strip().lower() for e in encodings if e.strip()]):
        if encoding != "identity":
            pieces = _strict(pieces, encoding)
    return pieces


def _strict(pieces: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    makers = _decoders(encoding)
    data = b"".join(pieces)  # the encoded body is bounded by the fetch size limit; the output is not
    for attempt, make in enumerate(makers):
        produced = False
        try:
            for out in _strict_stream(make, data, gzip=encoding in ("gzip", "x-gzip")):
                produced = produced or bool(out)
                yield out
            return
        except Corrupt:
            if produced or attempt == len(makers) - 1:
                raise
        except Exception as exc:  # noqa: BLE001 - zlib.error, brotli.error, ZstdError...
            if produced or attempt == len(makers) - 1:
                raise Corrupt(f"{encoding}: {exc}") from None


def _strict_stream(make: Callable[[], Any], data: bytes, *, gzip: bool) -> Iterator[bytes]:
    if not data:
        raise Corrupt("empty encoded body")
    while True:
        decoder = make()
        yield from _decode_piece(decoder, data)
        finished = decoder.is_finished() if hasattr(decoder, "is_finished") else decoder.eof
        if not finished:
            raise Corrupt("the compressed stream ends early (truncated)")
        rest = getattr(decoder, "unused_data", b"")
        if not rest:
            return
        if not gzip:
            raise Corrupt(f"{len(rest)} bytes after the end of the compressed stream")
        data = rest  # another gzip member
