"""Fetch hostile URLs safely: the one HTTP client the crawler and URL ingest use.

Rules, applied to the first request and again to every redirect hop:

* Only absolute http/https URLs with a host, a port in 1-65535 and no credentials.
* The host is resolved once; every resolved address must be public (`is_public_address`) or be an
  exact `(IP, port)` pair of the allow list. One bad address refuses the whole host.
* The connection goes to a vetted IP itself (tried in resolver order), never to the name, so DNS
  rebinding cannot swap it. The URL keeps the hostname, so the Host header, TLS SNI and certificate
  verification all use the original hostname.
* Redirects (301/302/303/307/308 with a Location) are followed by hand, at most `max_redirects`.
* The body is streamed and abandoned past `max_bytes`; a larger Content-Length is refused first.
  With `prefix=N`, a body sent without Content-Encoding is read up to N bytes only and the rest is
  never downloaded (`Response.complete` is then False): robots.txt, of which only a prefix is parsed.
* Every socket operation is cut to the time left before the per-fetch `deadline`, so a server
  trickling bytes is stopped on time (DNS resolution is the one step the deadline cannot cut).
* The body is returned as sent: `Accept-Encoding: identity` is asked for by default, and a
  Content-Encoding is never undone here (Scrapy's compression middleware does that, with its limits).
* Every hop's exchange (the request headers sent, the status line and headers received, when) is
  kept in `Response.exchanges`, so that the answer can be archived as seen (ingest/capture.py).
* Non-2xx statuses are returned, for the caller to decide; with `image=True` they raise `http_status`.
* `image=True` also requires a Content-Type of image/* or application/octet-stream (none counts as
  the latter), no Content-Encoding, and bytes `sniff_format` knows as an image; or, when the request
  was conditional (If-None-Match / If-Modified-Since), a 304 Not Modified answer with no body. Recognised formats
  facetrail does not index (AVIF, SVG...) pass: `decode` reports them as `unsupported_format`.

`SafeFetcher` holds no connection between fetches (one connection per hop, closed after it), so one
instance can be shared by any number of threads.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from ..images.decode import sniff_format

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Addresses never fetched (first match names the reason). IPv6 outside 2000::/3 is refused too.
# IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32) addresses are judged
# by the IPv4 addresses they embed, before this table.
_REFUSED: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
    (ipaddress.ip_network(net), label)
    for net, label in [
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fec0::/10", "site-local"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ]
]
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_CONDITIONAL = frozenset({"if-none-match", "if-modified-since"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """A URL that was not fetched. `reason` is a short stable code, the message explains:

    bad_url             malformed or relative URL, no host, port outside 1-65535, or user:password@
    scheme              not http or https (also when a redirect leads there)
    refused_address     resolves to a non-public address whose (IP, port) is not on the allow list
    dns                 the name does not resolve, or the resolver gave no or invalid addresses
    connect             no connection, a TLS failure (e.g. certificate), or a broken HTTP exchange
    timeout             connect timeout, read timeout (server stalled) or the overall deadline
    too_many_redirects  more than max_redirects redirects (this also ends redirect loops)
    too_large           Content-Length or the streamed body over max_bytes
    http_status         image fetch answered with a non-2xx status
    not_an_image        image fetch with a non-image Content-Type, a Content-Encoding, or bytes that
                        are no known image format
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of a fetch. `allow` holds exact (IP, port) pairs, as `parse_allow` gives them."""

    allow: frozenset[tuple[str, int]] = frozenset()
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 5
    read_timeout: float = 10
    deadline: float = 30
    max_redirects: int = 5
    user_agent: str = "facetrail"


@dataclass(frozen=True)
class Exchange:
    """One hop of a fetch as it went over the wire (for archiving: ingest/capture.py)."""

    url: str  # the URL requested by this hop
    request_headers: tuple[tuple[str, str], ...]  # as sent, in order (latin-1)
    http_version: str  # "HTTP/1.1"
    status: int
    reason: str  # the reason phrase as received ("" if none)
    headers: tuple[tuple[str, str], ...]  # as received: order, case and repeats kept (latin-1)
    fetched_at: datetime  # when the response head arrived (aware, UTC)


@dataclass(frozen=True)
class Response:
    """A fetched response (any status unless `image=True`)."""

    url: str  # as requested
    final_url: str  # after redirects
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content_type: str  # the Content-Type header as sent ("" if none)
    body: bytes  # as sent (Content-Encoding not undone)
    address: str  # the IP connected to for the final hop
    complete: bool = True  # False: the body was cut at the `prefix` asked for
    exchanges: tuple[Exchange, ...] = ()  # every hop, redirects first; the last one sent `body`


def _refusal(ip: _IP) -> str | None:
    """Why `ip` must not be fetched, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped IPv6"
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        forms = [("IPv4-mapped", ip.ipv4_mapped), ("NAT64", nat64), ("6to4", ip.sixtofour),
                 *(("Teredo", v4) for v4 in ip.teredo or ())]
        embedded = [(form, v4) for form, v4 in forms if v4 is not None]
        if embedded:  # judged by the IPv4 address(es) it carries
            for form, v4 in embedded:
                if why := _refusal(v4):
                    return f"{form} form of {v4}, {why}"
            return None
    label = next((label for net, label in _REFUSED if ip in net), None)
    if label is None and ip.version == 6 and ip not in _GLOBAL_UNICAST:
        return "reserved (not global unicast)"
    return label


def is_public_address(ip: str) -> bool:
    """True for an address on the public internet; False for any special-purpose one or a non-IP."""
    try:
        return _refusal(ipaddress.ip_address(ip)) is None
    except ValueError:
        return False


def _allow_pairs(host: str, port: int) -> set[tuple[str, int]]:
    if not 1 <= port <= 65535:
        raise ValueError(f"allow list entry {host}:{port}: port must be 1-65535")
    if host.lower() == "localhost":
        return {("127.0.0.1", port), ("::1", port)}
    try:
        return {(str(ipaddress.ip_address(host.strip("[]"))), port)}
    except ValueError:
        raise ValueError(f"allow list entry {host}:{port}: {host!r} is not an IP address or localhost "
                         "(entries match the address connected to, not a name)") from None


def parse_allow(text: str) -> frozenset[tuple[str, int]]:
    """Parse "127.0.0.1:8765, localhost:9000, [::1]:80" (commas or spaces) into (IP, port) pairs.

    `localhost` means both 127.0.0.1 and ::1. Raises ValueError on a malformed entry.
    """
    pairs: set[tuple[str, int]] = set()
    for entry in text.replace(",", " ").split():
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"allow list entry {entry!r} is not host:port (e.g. 127.0.0.1:8765)")
        pairs |= _allow_pairs(host, int(port))
    return frozenset(pairs)


def _system_resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse(url: str, base: httpx.URL | None = None) -> httpx.URL:
    """Parse and check `url` (a redirect's Location when `base` is the URL that sent it)."""
    what = f"{url!r}" if base is None else f"redirect from {base} to {url!r}"
    try:
        parsed = httpx.URL(url) if base is None else base.join(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError("bad_url", f"invalid URL {what}: {exc}") from None
    if not parsed.scheme:
        raise FetchError("bad_url", f"{what} is not an absolute URL")
    if parsed.scheme not in _DEFAULT_PORTS:
        raise FetchError("scheme", f"{what}: only http and https URLs are fetched, not {parsed.scheme}:")
    if not parsed.raw_host:
        raise FetchError("bad_url", f"{what} has no host")
    if parsed.userinfo:
        raise FetchError("bad_url", f"{what}: URLs with credentials (user:password@) are not fetched")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise FetchError("bad_url", f"{what}: port {parsed.port} is out of range")
    return parsed


_SYSTEM = httpcore.SyncBackend()


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the vetted IPs whatever host httpcore names; cuts every timeout to the deadline."""

    def __init__(self, addresses: list[str], end: float) -> None:
        self.addresses, self.end, self.connected = addresses, end, ""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Iterable[Any] | None = None
                    ) -> httpcore.NetworkStream:
        errors: list[Exception] = []
        for address in self.addresses:  # never empty: a host without addresses fails in _vet
            try:
                limit = _left(self.end, timeout, httpcore.ConnectTimeout)
                stream = _SYSTEM.connect_tcp(address, port, limit, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                errors.append(exc)
                continue
            self.connected = address
            return _DeadlineStream(stream, self.end)
        raise errors[-1]


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, end: float) -> None:
        self.stream, self.end = stream, end

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, _left(self.end, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, _left(self.end, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        limit = _left(self.end, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, limit), self.end)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


def _left(end: float, timeout: float | None, error: type[Exception]) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise error("deadline reached")
    return left if timeout is None else min(timeout, left)


class SafeFetcher:
    """Fetches URLs under a `FetchPolicy`. Thread-safe; `resolve` (host -> IP strings) is injectable."""

    def __init__(self, policy: FetchPolicy, resolve: Callable[[str], list[str]] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self._allow = {pair for host, port in policy.allow for pair in _allow_pairs(host, port)}
        self._resolve = resolve or _system_resolve
        self._ssl = ssl_context or httpx.create_ssl_context()

    def fetch(self, url: str, *, image: bool = False, headers: dict[str, str] | None = None,
              prefix: int | None = None) -> Response:
        """GET `url`; with `image=True` also require a 2xx image. Raises FetchError.

        `headers` are sent on every hop, whatever its host, so they must hold no secrets. `prefix`:
        read at most that many bytes of a body sent without Content-Encoding (module docstring).
        """
        end = time.monotonic() + self.policy.deadline
        target = _parse(url)
        exchanges: list[Exchange] = []
        for hops in range(self.policy.max_redirects + 1):
            try:
                result = self._hop(url, target, end, image, headers or {}, prefix, exchanges)
            except FetchError as exc:
                if not hops:
                    raise
                raise FetchError(exc.reason, f"{exc} (reached by {hops} redirect(s) from {url})") from None
            if isinstance(result, Response):
                return result
            target = result
        raise FetchError("too_many_redirects",
                         f"{url}: more than {self.policy.max_redirects} redirects (the next was to {target})")

    def _vet(self, host: str, port: int) -> list[str]:
        """Resolve `host` once; return its addresses if every one may be connected to on `port`."""
        try:
            ipaddress.ip_address(host)
            literal, resolved = True, [host]
        except ValueError:
            literal = False
            try:
                resolved = self._resolve(host)
            except OSError as exc:
                raise FetchError("dns", f"cannot resolve {host}: {exc}") from None
        if not resolved:
            raise FetchError("dns", f"{host} has no address")
        addresses = []
        for text in resolved:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                raise FetchError("dns", f"{host} resolved to {text!r}, which is not an IP address") from None
            why = _refusal(ip)
            if why and (str(ip), port) not in self._allow:
                who = str(ip) if literal else f"{host} resolves to {ip}"
                raise FetchError("refused_address", f"{who}: not a public address ({why}), "
                                 f"and port {port} of it is not on the allow list")
            addresses.append(str(ip))
        return addresses

    def _hop(self, url: str, target: httpx.URL, end: float, image: bool, extra: dict[str, str],
             prefix: int | None = None, exchanges: list[Exchange] | None = None) -> Response | httpx.URL:
        host, scheme = target.raw_host.decode("ascii"), target.scheme
        port = target.port or _DEFAULT_PORTS[scheme]
        backend = _PinnedBackend(self._vet(host, port), end)
        headers = {"user-agent": self.policy.user_agent, "accept": "image/*" if image else "*/*",
                   "accept-encoding": "identity", **{k.lower(): v for k, v in extra.items()},
                   "host": target.netloc.decode("ascii"), "connection": "close"}
        timeouts = {"connect": self.policy.connect_timeout, "read": self.policy.read_timeout,
                    "write": self.policy.read_timeout}
        origin = httpcore.Origin(target.raw_scheme, target.raw_host, port)
        request_url = httpcore.URL(scheme=origin.scheme, host=origin.host, port=port, target=target.raw_path)
        try:
            with httpcore.HTTPConnection(origin, ssl_context=self._ssl, network_backend=backend) as conn, \
                 conn.stream("GET", request_url, headers=list(headers.items()),
                             extensions={"timeout": timeouts}) as raw:
                head = dict(httpx.Headers(raw.headers).items())
                if exchanges is not None:
                    exchanges.append(_exchange(target, headers, raw))
                if raw.status in _REDIRECTS and "location" in head:
                    return _parse(head["location"], base=target)
                not_modified = raw.status == 304 and bool(_CONDITIONAL & headers.keys())
                if image and not not_modified:
                    _check_image_head(str(target), raw.status, head)
                if prefix is not None and head.get("content-encoding", "identity").lower() == "identity":
                    body, complete = _read_prefix(raw.iter_stream(), prefix)
                else:
                    body, complete = self._read(str(target), head, raw.iter_stream()), True
        except httpcore.TimeoutException as exc:
            if time.monotonic() >= end - 0.01:  # the deadline, not a per-step timeout, ran out
                why = f"gave up at the {self.policy.deadline:g} s deadline"
            elif isinstance(exc, httpcore.ConnectTimeout):
                why = f"no connection within {self.policy.connect_timeout:g} s"
            else:
                why = f"the server stalled for {self.policy.read_timeout:g} s"
            raise FetchError("timeout", f"{target}: {why}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            where = f"{host} ({backend.connected}:{port})" if backend.connected else f"{host} port {port}"
            raise FetchError("connect", f"{target}: connection to {where} failed: {exc}") from None
        if image and not not_modified:
            _check_image_body(str(target), body)
        content_type = head.get("content-type", "")
        return Response(url, str(target), raw.status, head, content_type, body, backend.connected, complete,
                        tuple(exchanges or ()))

    def _read(self, url: str, head: dict[str, str], chunks: Iterator[bytes]) -> bytes:
        limit = self.policy.max_bytes
        length = head.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise FetchError("too_large", f"{url}: Content-Length {length} is over the {limit}-byte limit")
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise FetchError("too_large", f"{url}: body is over the limit of {limit} bytes")
        return bytes(body)


def _exchange(target: httpx.URL, sent: dict[str, str], raw: httpcore.Response) -> Exchange:
    def text(value: Any) -> str:
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    extensions = raw.extensions
    return Exchange(str(target), tuple((k, text(v)) for k, v in sent.items()),
                    text(extensions.get("http_version", b"HTTP/1.1")), raw.status,
                    text(extensions.get("reason_phrase", b"")),
                    tuple((text(k), text(v)) for k, v in raw.headers), datetime.now(UTC))


def _read_prefix(chunks: Iterator[bytes], prefix: int) -> tuple[bytes, bool]:
    """The first `prefix` bytes of a body, and whether that was all of it (the rest is not read)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > prefix:
            return bytes(body[:prefix]), False
    return bytes(body), True


def _check_image_head(url: str, status: int, head: dict[str, str]) -> None:
    if not 200 <= status <= 299:
        raise FetchError("http_status", f"{url}: HTTP status {status}, not an image")
    media = head.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if not (media.startswith("image/") or media == "application/octet-stream"):
        raise FetchError("not_an_image", f"{url}: Content-Type is {media or 'empty'}, not an image")
    if head.get("content-encoding", "identity").lower() != "identity":
        raise FetchError("not_an_image", f"{url}: the image was sent {head['content-encoding']}-encoded")


def _check_image_body(url: str, body: bytes) -> None:
    if sniff_format(body) is None:
        raise FetchError("not_an_image", f"{url}: the bytes are not a known image format")
