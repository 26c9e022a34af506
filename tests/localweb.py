"""A tiny local web for crawler tests: HTTP servers on 127.0.0.1 ephemeral ports (one per "host"),
each serving a route table and logging every request it receives."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def image_bytes(color: str, fmt: str = "JPEG", size: tuple[int, int] = (16, 16)) -> bytes:
    """A small real image."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    location: str | None = None  # answer 302 to this URL

    @staticmethod
    def html(text: str, **kwargs) -> Route:
        return Route(text.encode(), **kwargs)

    @staticmethod
    def image(data: bytes, content_type: str = "image/jpeg", **kwargs) -> Route:
        return Route(data, content_type=content_type, **kwargs)


@dataclass
class Site:
    """One server. `log` holds (Host header, path) of every request, in arrival order."""

    name: str  # the host name the tests use for it ("" to use 127.0.0.1)
    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"{self.name or '127.0.0.1'}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    def paths(self) -> list[str]:
        return [path for _, path in self.log]


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.site.log.append((self.headers.get("Host", ""), self.path))
        route = self.site.routes.get(self.path, Route(b"not found", 404, "text/plain"))
        time.sleep(route.delay)
        try:
            self.send_response(302 if route.location else route.status)
            if route.location:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)
        except OSError:  # the client gave up (deadline, size limit)
            pass


@contextmanager
def serve(*names: str) -> Iterator[list[Site]]:
    """Start one server per name on 127.0.0.1 (ephemeral ports); stop them on exit."""
    sites, servers = [], []
    for name in names:
        site = Site(name)
        handler = type("Handler", (_Handler,), {"site": site})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        site.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        sites.append(site)
        servers.append(server)
    try:
        yield sites
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
