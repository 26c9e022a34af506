"""robots.txt against hostile and realistic local servers (127.0.0.1 only): every way of failing to
read it means "disallow all" (RFC 9309 2.3.1.4), groups are chosen by the product token, Crawl-delay
is honoured, and only the first 500 KiB are parsed.

Most robots.txt files here would allow the start page if read leniently (Scrapy alone read a corrupt
or bomb robots.txt as "no robots.txt"); the crawl must still request nothing but robots.txt.
"""

from __future__ import annotations

import gzip
import itertools
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import brotli
import pytest

try:
    from compression.zstd import compress as zstd_compress  # type: ignore[import-not-found]  # Python 3.14
except ImportError:
    from backports.zstd import compress as zstd_compress  # a dependency of Scrapy before Python 3.14

from facetrail.crawl.robots import MAX_PARSED

from . import test_crawl
from .support import Route, Site, serve
from .test_crawl import Guard, fetcher_for, run, scope_of

guard = test_crawl.guard  # the fixture that keeps every connection on 127.0.0.1

ALLOWS_HOME = b"User-agent: *\nDisallow: /private/\n"  # read leniently, the start page is allowed
DISALLOW = b"User-agent: *\nDisallow: /\n"
BOMB_LINES = 50_000_000  # bytes of blank lines: far over the fetch size limit once inflated


def _gzip_corrupt() -> bytes:
    data = bytearray(gzip.compress(ALLOWS_HOME * 20))
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def _deflate_junk() -> bytes:
    return zlib.compress(ALLOWS_HOME) + b"<html>trailing junk</html>"


# name -> (body, headers): each a robots.txt that cannot be read completely and correctly.
UNREADABLE: dict[str, tuple[bytes, dict[str, str]]] = {
    "corrupt_gzip": (_gzip_corrupt(), {"Content-Encoding": "gzip"}),
    "not_gzip_at_all": (ALLOWS_HOME, {"Content-Encoding": "gzip"}),
    "truncated_gzip": (gzip.compress(ALLOWS_HOME)[:-6], {"Content-Encoding": "gzip"}),
    "gzip_bomb": (gzip.compress(ALLOWS_HOME + b"\n" * BOMB_LINES, 9), {"Content-Encoding": "gzip"}),
    "brotli_bomb": (brotli.compress(ALLOWS_HOME + b"\n" * BOMB_LINES), {"Content-Encoding": "br"}),
    "truncated_brotli": (brotli.compress(ALLOWS_HOME * 50)[:-3], {"Content-Encoding": "br"}),
    "truncated_zstd": (zstd_compress(ALLOWS_HOME * 50)[:-3], {"Content-Encoding": "zstd"}),
    "gzip_then_br_bomb": (brotli.compress(gzip.compress(ALLOWS_HOME + b"\n" * BOMB_LINES)),
                          {"Content-Encoding": "gzip, br"}),
    "deflate_with_trailing_junk": (_deflate_junk(), {"Content-Encoding": "deflate"}),
    "unknown_encoding": (ALLOWS_HOME, {"Content-Encoding": "compress"}),
    "utf16_with_bom": (DISALLOW.decode().encode("utf-16"), {}),
    "utf16_without_bom": (DISALLOW.decode().encode("utf-16-le"), {}),
    "latin1": ("User-agent: *\nDisallow: /café/\n".encode("latin-1"), {}),
}


@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_robots_txt_disallows_everything(guard: Guard, name: str) -> None:
    body, headers = UNREADABLE[name]
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(body, content_type="text/plain; charset=utf-16" if "utf16" in name
                                        else "text/plain", headers=headers)
        c.routes["/"] = Route.html('<a href="/p.html">p</a><img src="/a.jpg">')
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), retries=0)
    assert result.skipped() == {(c.url("/robots.txt"), "robots_unreachable"), (c.url("/"), "robots")}
    assert c.paths() == ["/robots.txt"] and result.pages == [] and result.images == []
    assert "treated as disallowed" in result.errors[0][2]


def test_a_readable_compressed_robots_txt_is_obeyed(guard: Guard) -> None:
    """The other side: gzip (two members), brotli, UTF-8 with a BOM, and plain ASCII labelled
    Latin-1 (as many servers label text files) are read, not refused."""
    for body, headers in [(ALLOWS_HOME, {"Content-Type": "text/plain; charset=iso-8859-1"}),
                          (gzip.compress(b"User-agent: *\n") + gzip.compress(b"Disallow: /private/\n"),
                           {"Content-Encoding": "gzip"}),
                          (brotli.compress(ALLOWS_HOME), {"Content-Encoding": "br"}),
                          ("\ufeffUser-agent: *\nDisallow: /private/\n# café\n".encode(), {})]:
        with serve("c.test") as (c,):
            c.routes["/robots.txt"] = Route(body, content_type=headers.pop("Content-Type", "text/plain"),
                                            headers=headers)
            c.routes["/"] = Route.html('<a href="/p.html">p</a> <a href="/private/x.html">x</a>')
            c.routes["/p.html"] = Route.html("page")
            result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), retries=0)
        assert sorted(c.paths()) == ["/", "/p.html", "/robots.txt"], headers
        assert result.skipped() == {(c.url("/private/x.html"), "robots")}


def test_any_failure_reading_robots_txt_disallows_everything(guard: Guard,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever layer fails, even one nobody foresaw (here reading the answer raises), the host is
    disallowed: Scrapy's own middleware would have read the failure as "no robots.txt"."""
    from facetrail.crawl import handler

    def broken(*_: object) -> bytes:
        raise RuntimeError("a bug while reading robots.txt")

    monkeypatch.setattr(handler, "read_robots", broken)
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(ALLOWS_HOME, content_type="text/plain")
        c.routes["/"] = Route.html("home")
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), retries=0)
    assert c.paths() == ["/robots.txt"] and result.pages == []
    assert result.skipped() == {(c.url("/robots.txt"), "robots_unreachable"), (c.url("/"), "robots")}
    assert "a bug while reading robots.txt" in result.errors[0][2]


# --- a raw server: answers sent byte for byte, arrival times logged ----------------------------

@dataclass
class Raw:
    """A server answering each path with raw bytes (then closing). `log`: (path, arrival time)."""

    answers: dict[bytes, bytes]
    site: Site = field(default_factory=lambda: Site("c.test"))
    log: list[tuple[str, float]] = field(default_factory=list)


def _answer(status: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status}", "Connection: close", *headers]
    if not any(h.lower().startswith("content-type") for h in headers):
        head.append("Content-Type: text/html")
    if length is not None or not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@contextmanager
def raw_server(answers: dict[bytes, bytes]) -> Iterator[Raw]:
    raw = Raw(answers)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(4096)
            raw.log.append((line.split()[1].decode(), time.monotonic()))
            while self.rfile.readline(4096) not in (b"\r\n", b""):
                pass
            path = line.split()[1]
            self.wfile.write(raw.answers.get(path, _answer("404 Not Found", b"not found")))
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    raw.site.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield raw
    finally:
        server.shutdown()
        server.server_close()


HOME = _answer("200 OK", b'<a href="/p.html">p</a>')


@pytest.mark.parametrize("robots", [
    _answer("200 OK", ALLOWS_HOME[:20], "Content-Type: text/plain", length=len(ALLOWS_HOME)),
    _answer("200 OK", b"22\r\n" + ALLOWS_HOME + b"\r\n", "Transfer-Encoding: chunked"),  # no last chunk
], ids=["short_of_content_length", "chunked_without_last_chunk"])
def test_truncated_robots_txt_disallows_everything(guard: Guard, robots: bytes) -> None:
    with raw_server({b"/robots.txt": robots, b"/": HOME}) as raw:
        result = run([raw.site.url("/")], scope_of(raw.site), fetcher_for(guard, raw.site), retries=0)
    assert [path for path, _ in raw.log] == ["/robots.txt"] and result.pages == []
    assert result.skipped() == {(raw.site.url("/robots.txt"), "robots_unreachable"),
                                (raw.site.url("/"), "robots")}


# --- product token ------------------------------------------------------------------------------

def test_groups_are_matched_on_the_product_token(guard: Guard) -> None:
    """`FaceTrail/0.1` (as site owners see it in their logs) and `facetrail` both name the crawler
    and their rules are combined; `face` and `facetrail-images` are other crawlers; `*` is not used
    when a group names facetrail."""
    robots = ("User-agent: face\nDisallow: /\n\n"
              "User-agent: facetrail-images\nDisallow: /\n\n"
              "User-agent: FaceTrail/0.1  # our crawler, as it signs\nDisallow: /a/\n\n"
              "User-agent: FACETRAIL\nDisallow: /b/\n\n"
              "User-agent: *\nDisallow: /\n")
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(robots.encode(), content_type="text/plain")
        c.routes["/"] = Route.html('<a href="/a/x.html">a</a> <a href="/b/y.html">b</a> <a href="/c.html">c</a>')
        c.routes["/c.html"] = Route.html("allowed")
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    assert sorted(c.paths()) == ["/", "/c.html", "/robots.txt"]
    assert result.skipped() == {(c.url("/a/x.html"), "robots"), (c.url("/b/y.html"), "robots")}


def test_a_group_for_another_crawler_does_not_apply(guard: Guard) -> None:
    robots = "User-agent: facetrailbot\nUser-agent: Face\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n"
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(robots.encode(), content_type="text/plain")
        c.routes["/"] = Route.html('<a href="/private/x.html">x</a>')
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    assert sorted(c.paths()) == ["/", "/robots.txt"]
    assert result.skipped() == {(c.url("/private/x.html"), "robots")}


# --- Crawl-delay --------------------------------------------------------------------------------

def test_crawl_delay_is_a_floor_between_requests(guard: Guard) -> None:
    """Crawl-delay 0.3 s with the crawl's own delay 0 and 4 requests allowed at a time: every fetch
    from the host starts at least 0.3 s after the previous one (and after robots.txt). A lower
    bound only (sleeping guarantees it, whatever the machine's speed); without the floor the five
    requests arrive within milliseconds."""
    links = "".join(f'<a href="/p{n}.html">{n}</a>' for n in range(4))
    answers = {b"/robots.txt": _answer("200 OK", b"User-agent: facetrail\nCrawl-delay: 0.3\n\n"
                                       b"User-agent: *\nDisallow: /\n", "Content-Type: text/plain"),
               b"/": _answer("200 OK", links.encode())}
    answers.update({f"/p{n}.html".encode(): _answer("200 OK", b"page") for n in range(4)})
    with raw_server(answers) as raw:
        result = run([raw.site.url("/")], scope_of(raw.site), fetcher_for(guard, raw.site), concurrency=4)
    assert len(result.pages) == 5 and [path for path, _ in raw.log][:2] == ["/robots.txt", "/"]
    times = [at for _, at in raw.log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Arrival, not start, times: 0.05 s allowed for a connection slower than the next one.
    assert len(gaps) == 5 and min(gaps) >= 0.25 and times[-1] - times[0] >= 1.45, gaps


def test_a_crawl_delay_over_the_maximum_leaves_the_host_alone(guard: Guard) -> None:
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(b"User-agent: *\nCrawl-delay: 3600\n", content_type="text/plain")
        c.routes["/"] = Route.html("home")
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    assert c.paths() == ["/robots.txt"] and result.pages == []
    assert result.skipped() == {(c.url("/robots.txt"), "robots_unreachable"), (c.url("/"), "robots")}
    assert "3600 s between requests" in result.errors[0][2]


# --- size ---------------------------------------------------------------------------------------

def test_only_the_first_500_kib_are_parsed(guard: Guard) -> None:
    """A 10 MB robots.txt: its rules within the first 500 KiB apply, one just inside the limit too;
    a rule past it is ignored (RFC 9309 2.5), and a line cut by the limit is dropped whole. Only that
    prefix is downloaded: the fetch size limit is 1 MB (before, the file was refused as too large)."""
    head = b"User-agent: *\nDisallow: /private/\n"
    inside = b"Disallow: /edge/\n"
    filler = b"# " + b"x" * 97 + b"\n"  # 100-byte comment lines
    body = head + filler * ((MAX_PARSED - len(head) - len(inside) - 10) // 100)
    body += b"#" * (MAX_PARSED - 5 - len(body) - len(inside) - 1) + b"\n" + inside
    assert len(body) == MAX_PARSED - 5  # the next line straddles the limit
    body += b"Disallow: /cut/\n" + filler * 100_000 + b"Disallow: /late/\n"
    assert len(body) > 10_000_000
    links = "".join(f'<a href="/{name}/x.html">{name}</a>' for name in ["private", "edge", "cut", "late"])
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = Route(body, content_type="text/plain")
        c.routes["/"] = Route.html(links)
        c.routes["/cut/x.html"] = c.routes["/late/x.html"] = Route.html("page")
        # the fetch size limit (1 MB) is far below the file's size: only its prefix is downloaded
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c, max_bytes=1_000_000, deadline=10))
    assert sorted(c.paths()) == ["/", "/cut/x.html", "/late/x.html", "/robots.txt"]
    assert result.skipped() == {(c.url("/private/x.html"), "robots"), (c.url("/edge/x.html"), "robots")}
