"""Safe fetching of hostile URLs. Every connection these tests make goes to 127.0.0.1: names resolve
through an injected resolver, and a guard on socket.create_connection refuses (and records) any
other address, so a refusal is proven to happen before a connection is even attempted."""

from __future__ import annotations

import io
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from facetrail.crawl.fetch import FetchError, FetchPolicy, SafeFetcher, is_public_address, parse_allow


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "JPEG")
    return out.getvalue()


JPEG = _jpeg()
HUGE_TOTAL = 200 * 1024 * 1024


@dataclass
class Server:
    port: int
    huge_aborted: threading.Event = field(default_factory=threading.Event)
    sni: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def trickle(self, data: bytes) -> None:
        try:
            for byte in data:
                self.wfile.write(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: C901 - one route table
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        state: Server = self.server.state  # type: ignore[attr-defined]
        if path == "/image.jpg":
            self.reply(200, JPEG, "image/jpeg")
        elif path == "/octet":
            self.reply(200, JPEG, "application/octet-stream")
        elif path == "/gzip.jpg":
            self.reply(200, JPEG, "image/jpeg", Content_Encoding="gzip")
        elif path == "/html":
            self.reply(200, b"<!doctype html><p>hello</p>", "text/html; charset=utf-8")
        elif path == "/fake.jpg":
            self.reply(200, b"<!doctype html><p>not a jpeg</p>", "image/jpeg")
        elif path.startswith("/status/"):
            self.reply(int(path.rsplit("/", 1)[1]), b"<p>error page</p>", "text/html")
        elif path == "/echo":
            sent = {name.lower(): value for name, value in self.headers.items()}
            self.reply(200, json.dumps(sent).encode(), "application/json")
        elif path == "/redirect":
            self.redirect(query["to"][0])
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/chain/{left - 1}") if left else self.reply(200, JPEG, "image/jpeg")
        elif path == "/loop-a":
            self.redirect("/loop-b")
        elif path == "/loop-b":
            self.redirect("/loop-a")
        elif path.startswith("/bytes/"):
            self.reply(200, b"x" * int(path.rsplit("/", 1)[1]), "application/octet-stream")
        elif path == "/huge-declared":  # claims a gigabyte, then stalls
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"x" * 100)
            time.sleep(3)
        elif path == "/huge":  # no Content-Length: the body ends when the connection does
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(HUGE_TOTAL // 65536):
                    self.wfile.write(b"x" * 65536)
            except OSError:
                state.huge_aborted.set()
        elif path == "/trickle-body":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.trickle(b"x" * 100)
        elif path == "/trickle-headers":
            self.trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100)
        elif path == "/stall":
            time.sleep(3)
        else:
            self.reply(404, b"no such route", "text/plain")


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    state = Server(httpd.server_address[1])
    httpd.state = state  # type: ignore[attr-defined]
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: state.sni.append(name)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", folder / "key.pem", "-out", folder / "cert.pem", "-days", "2",
         "-subj", "/CN=facetrail.test", "-addext", "subjectAltName=DNS:facetrail.test"],
        check=True, capture_output=True,
    )
    return folder


@pytest.fixture(scope="module")
def tls_server(cert) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    yield from _serve(context)


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> Iterator[list[tuple[str, int]]]:
    """Every connection attempt; any to an address other than 127.0.0.1 is refused on the spot."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        attempts.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    yield attempts
    assert all(host == "127.0.0.1" for host, _ in attempts), attempts


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that is listening but not allowed: any connection to it would be queued."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


def resolver(names: dict[str, list[str]], calls: list[str] | None = None) -> Callable[[str], list[str]]:
    def resolve(host: str) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]

    return resolve


def fetcher(server: Server, names: dict[str, list[str]] | None = None, **policy) -> SafeFetcher:
    policy = {"allow": frozenset({("127.0.0.1", server.port)}), "connect_timeout": 2, "read_timeout": 2,
              "deadline": 5, **policy}
    return SafeFetcher(FetchPolicy(**policy), resolver({"img.test": ["127.0.0.1"], **(names or {})}))


def refused(fetch: Callable[[], object], reason: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch()
    assert info.value.reason == reason, str(info.value)
    return info.value


# --- addresses -------------------------------------------------------------------------------------

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "198.17.255.255",
          "223.255.255.255", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8",
          "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"]
NOT_PUBLIC = [
    "0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "198.18.0.1", "198.19.255.255",
    "192.0.0.8", "192.0.2.1", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255",
    "::", "::1", "fe80::1", "febf::1", "fec0::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1",
    "2001:db8::1", "100::1", "3fff::1", "64:ff9b:1::a00:1", "::7f00:1", "::808:808",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:c0a8:101::1", "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (stored inverted)
    "2001:0:a00:1::1",  # Teredo, server 10.0.0.1
    "fe80::1%eth0", "2606:4700:4700::1111%eth0", "8000::1", "not-an-ip", "", "127.1",
]


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_public(ip):
    assert is_public_address(ip)


@pytest.mark.parametrize("ip", NOT_PUBLIC)
def test_special_addresses_are_not_public(ip):
    assert not is_public_address(ip)


def test_parse_allow_gives_exact_ip_port_pairs():
    assert parse_allow("127.0.0.1:8765, [::1]:80  10.0.0.5:9200,localhost:9000") == {
        ("127.0.0.1", 8765), ("::1", 80), ("10.0.0.5", 9200), ("127.0.0.1", 9000), ("::1", 9000)}
    assert parse_allow("  ") == frozenset()


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:x", ":80", "127.0.0.1:0",
                                  "127.0.0.1:65536", "example.com:80", "127.0.0.1:80:90"])
def test_parse_allow_rejects_bad_entries(text):
    with pytest.raises(ValueError, match="allow list entry"):
        parse_allow(text)


def test_policy_allow_entries_are_normalised_and_checked(server):
    policy = FetchPolicy(allow=frozenset({("localhost", server.port)}))
    assert SafeFetcher(policy).fetch(server.url("/image.jpg")).status == 200
    with pytest.raises(ValueError, match="not an IP address"):
        SafeFetcher(FetchPolicy(allow=frozenset({("example.com", 80)})))


# --- URLs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("ftp://img.test/a.jpg", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("gopher://127.0.0.1:70/", "scheme"),
    ("img.test/a.jpg", "bad_url"),
    ("/a.jpg", "bad_url"),
    ("http:///a.jpg", "bad_url"),
    ("http://user:secret@img.test/a.jpg", "bad_url"),
    ("http://img.test:0/", "bad_url"),
    ("http://img.test:70000/", "bad_url"),
    ("http://img.test\n/", "bad_url"),
])
def test_bad_urls_are_refused_before_connecting(server, connections, url, reason):
    refused(lambda: fetcher(server).fetch(url), reason)
    assert connections == []


# --- addresses and the allow list ------------------------------------------------------------------

@pytest.mark.parametrize("addresses", [
    ["10.0.0.1"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["fe80::1"], ["::1"], ["127.0.0.1"],
    ["192.168.0.10"], ["fd00::1"], ["100.64.1.1"], ["0.0.0.0"], ["::"], ["64:ff9b::a00:1"],
    ["2002:a9fe:a9fe::1"], ["8.8.8.8", "10.0.0.1"],  # one bad address refuses the host
])
def test_names_resolving_to_special_addresses_are_refused_before_connecting(server, connections, addresses):
    error = refused(lambda: fetcher(server, {"evil.test": addresses}).fetch("http://evil.test/x.jpg"),
                    "refused_address")
    assert "evil.test resolves to" in str(error) and "not a public address" in str(error)
    assert connections == []


def test_ip_literals_are_vetted_too(server, connections):
    for url in ["http://10.0.0.1/", "http://[::ffff:7f00:1]/", "http://[fe80::1]/", "http://169.254.169.254/",
                "http://127.0.0.1/"]:
        refused(lambda: fetcher(server).fetch(url), "refused_address")
    assert connections == []


def test_allowed_loopback_port_is_fetched(server):
    response = fetcher(server).fetch(server.url("/image.jpg"), image=True)
    assert (response.status, response.body, response.address) == (200, JPEG, "127.0.0.1")
    assert response.url == response.final_url == server.url("/image.jpg")
    assert response.content_type == "image/jpeg" and response.headers["content-type"] == "image/jpeg"
    assert all(name == name.lower() for name in response.headers)


def test_other_loopback_port_is_refused_without_connecting(server, listener, connections):
    port = listener.getsockname()[1]
    error = refused(lambda: fetcher(server).fetch(f"http://127.0.0.1:{port}/"), "refused_address")
    assert f"port {port}" in str(error) and "loopback" in str(error)
    refused(lambda: fetcher(server, {"local.test": ["127.0.0.1"]}).fetch(f"http://local.test:{port}/"),
            "refused_address")
    assert_no_connection(listener)
    assert connections == []


def test_host_and_user_agent_are_sent_and_the_vetted_ip_is_connected(server, connections):
    ua = "facetrail/0.1 (+https://facetrail.example/contact)"
    extra = {"X-Extra": "1", "Accept": "text/plain", "Host": "spoofed.test"}
    response = fetcher(server, user_agent=ua).fetch(server.url("/echo", host="img.test"), headers=extra)
    sent = json.loads(response.body)
    assert sent["host"] == f"img.test:{server.port}"
    assert sent["user-agent"] == ua
    assert (sent["accept-encoding"], sent["x-extra"], sent["accept"]) == ("identity", "1", "text/plain")
    assert connections == [("127.0.0.1", server.port)]


def test_name_is_resolved_once_and_the_vetted_ip_is_used(server, connections):
    """DNS rebinding: a second lookup would give a private address; there must be no second lookup."""
    calls: list[str] = []
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])
    policy = FetchPolicy(allow=frozenset({("127.0.0.1", server.port)}))
    fetcher_ = SafeFetcher(policy, lambda host: calls.append(host) or next(answers))
    assert fetcher_.fetch(server.url("/image.jpg", host="rebind.test")).status == 200
    assert calls == ["rebind.test"]
    assert connections == [("127.0.0.1", server.port)]


def test_next_vetted_address_is_tried_when_one_does_not_connect(server, connections):
    multi = fetcher(server, {"multi.test": ["8.8.8.8", "127.0.0.1"]})
    assert multi.fetch(server.url("/echo", "multi.test")).address == "127.0.0.1"
    # The guard refused 8.8.8.8 as an unreachable address would be, and the next address was tried.
    assert connections == [("8.8.8.8", server.port), ("127.0.0.1", server.port)]
    connections.remove(("8.8.8.8", server.port))


# --- redirects -------------------------------------------------------------------------------------

def test_redirect_to_other_loopback_port_is_refused(server, listener, connections):
    port = listener.getsockname()[1]
    error = refused(lambda: fetcher(server).fetch(server.url(f"/redirect?to=http://127.0.0.1:{port}/x")),
                    "refused_address")
    assert f"port {port}" in str(error)
    assert_no_connection(listener)
    assert connections == [("127.0.0.1", server.port)]


def test_redirect_to_name_resolving_to_private_address_is_refused(server, connections):
    url = server.url(f"/redirect?to=http://evil.test:{server.port}/image.jpg")
    error = refused(lambda: fetcher(server, {"evil.test": ["10.0.0.1"]}).fetch(url), "refused_address")
    assert "evil.test resolves to 10.0.0.1" in str(error) and "by 1 redirect(s) from" in str(error)
    assert connections == [("127.0.0.1", server.port)]


def test_redirect_to_other_scheme_is_refused(server):
    error = refused(lambda: fetcher(server).fetch(server.url("/redirect?to=file:///etc/passwd")), "scheme")
    assert "redirect from" in str(error)


def test_redirect_loop_is_cut_off(server, connections):
    refused(lambda: fetcher(server).fetch(server.url("/loop-a")), "too_many_redirects")
    assert len(connections) == 6  # the first request and 5 redirects


def test_redirects_up_to_the_limit_are_followed(server):
    response = fetcher(server, max_redirects=3).fetch(server.url("/chain/3", host="img.test"), image=True)
    assert response.final_url == server.url("/chain/0", host="img.test")
    assert response.body == JPEG
    refused(lambda: fetcher(server, max_redirects=3).fetch(server.url("/chain/4")), "too_many_redirects")


# --- size, time ------------------------------------------------------------------------------------

def test_body_up_to_max_bytes_is_accepted(server):
    assert len(fetcher(server, max_bytes=5000).fetch(server.url("/bytes/5000")).body) == 5000


def test_body_over_max_bytes_is_refused(server):
    error = refused(lambda: fetcher(server, max_bytes=5000).fetch(server.url("/bytes/5001")), "too_large")
    assert "Content-Length 5001" in str(error)


def test_huge_content_length_is_refused_before_reading(server):
    start = time.monotonic()
    refused(lambda: fetcher(server, max_bytes=10**6).fetch(server.url("/huge-declared")), "too_large")
    assert time.monotonic() - start < 1.5  # the server stalls after its headers: nothing was awaited


def test_huge_body_without_length_is_abandoned_while_streaming(server):
    error = refused(lambda: fetcher(server, max_bytes=10**6).fetch(server.url("/huge")), "too_large")
    assert "body is over" in str(error)
    assert server.huge_aborted.wait(2), "the server finished sending: the body was read to its end"


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_trickling_server_is_cut_off_at_the_deadline(server, path):
    start = time.monotonic()
    error = refused(lambda: fetcher(server, read_timeout=5, deadline=0.5).fetch(server.url(path)), "timeout")
    assert 0.4 < time.monotonic() - start < 3  # read_timeout is 5 s; the trickle would last 10 s
    assert "deadline" in str(error)


def test_silent_server_hits_the_read_timeout(server):
    start = time.monotonic()
    error = refused(lambda: fetcher(server, read_timeout=0.3).fetch(server.url("/stall")), "timeout")
    assert time.monotonic() - start < 2.5  # the server stalls for 3 s, the deadline is 5 s
    assert "stalled for 0.3 s" in str(error)


# --- statuses, images ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_are_returned(server, status):
    response = fetcher(server).fetch(server.url(f"/status/{status}"))
    assert (response.status, response.body) == (status, b"<p>error page</p>")


@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_fail_an_image_fetch(server, status):
    error = refused(lambda: fetcher(server).fetch(server.url(f"/status/{status}"), image=True), "http_status")
    assert str(status) in str(error)


def test_octet_stream_image_is_accepted(server):
    assert fetcher(server).fetch(server.url("/octet"), image=True).body == JPEG


@pytest.mark.parametrize("path, words", [
    ("/html", "Content-Type is text/html"),
    ("/fake.jpg", "not a known image format"),
    ("/gzip.jpg", "gzip-encoded"),
])
def test_non_images_fail_an_image_fetch(server, path, words):
    error = refused(lambda: fetcher(server).fetch(server.url(path), image=True), "not_an_image")
    assert words in str(error)


def test_html_is_fine_without_image(server):
    assert fetcher(server).fetch(server.url("/html")).content_type == "text/html; charset=utf-8"


# --- DNS, connection, TLS --------------------------------------------------------------------------

@pytest.mark.parametrize("names", [{}, {"gone.test": []}, {"gone.test": ["not-an-ip"]}])
def test_dns_failures(server, connections, names):
    refused(lambda: fetcher(server, names).fetch("http://gone.test/a.jpg"), "dns")
    assert connections == []


def test_closed_allowed_port_is_a_connect_error(server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    error = refused(lambda: fetcher(server, allow=parse_allow(f"127.0.0.1:{port}")).fetch(
        f"http://127.0.0.1:{port}/"), "connect")
    assert "refused" in str(error).lower()


def tls_fetcher(tls_server: Server, cert: Path) -> SafeFetcher:
    names = {"facetrail.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    policy = FetchPolicy(allow=frozenset({("127.0.0.1", tls_server.port)}), deadline=5)
    return SafeFetcher(policy, resolver(names), ssl.create_default_context(cafile=cert / "cert.pem"))


def test_https_to_the_pinned_ip_verifies_the_certificate_for_the_hostname(tls_server, cert, connections):
    url = tls_server.url("/echo", host="facetrail.test", scheme="https")
    response = tls_fetcher(tls_server, cert).fetch(url)
    assert json.loads(response.body)["host"] == f"facetrail.test:{tls_server.port}"
    assert tls_server.sni[-1] == "facetrail.test"
    assert connections == [("127.0.0.1", tls_server.port)]


def test_https_certificate_for_another_name_is_refused(tls_server, cert):
    url = tls_server.url("/image.jpg", host="other.test", scheme="https")
    error = refused(lambda: tls_fetcher(tls_server, cert).fetch(url), "connect")
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_one_fetcher_serves_many_threads(server):
    shared = fetcher(server)
    results: list[bytes] = []

    def work() -> None:
        results.append(shared.fetch(server.url("/image.jpg", host="img.test"), image=True).body)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [JPEG] * 8


def test_a_prefix_of_an_unencoded_body_is_read_and_the_rest_never_downloaded(server):
    """robots.txt is fetched with a prefix: a huge one (200 MB here) costs its first bytes only."""
    response = fetcher(server, max_bytes=10**6).fetch(server.url("/huge"), prefix=600_000)
    assert len(response.body) == 600_000 and not response.complete
    assert server.huge_aborted.wait(2), "the server finished sending: the body was read to its end"
    whole = fetcher(server).fetch(server.url("/bytes/5000"), prefix=5000)
    assert len(whole.body) == 5000 and whole.complete


def test_an_encoded_body_is_read_whole_whatever_the_prefix(server):
    """A compressed body cannot be judged from a prefix of its bytes: it is read whole (up to max_bytes)."""
    response = fetcher(server).fetch(server.url("/gzip.jpg"), prefix=10)
    assert response.body == JPEG and response.complete
