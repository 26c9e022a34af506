"""Delivering watch notifications outside the web app: a webhook POST (JSON) and an email (SMTP).

Neither carries a face, an image, a page address or a descriptor: only that watch N of case C
had a new match, when, how close, and where to see it (the inbox, which needs a sign-in and
shows the result under the same rules as any search result). What leaves the server is then
the fact of a hit, not the finding.

Webhook URLs are checked like every other outbound address (crawl/fetch.py): http or https, a
host, no credentials; every address the host resolves to must be public, or an exact
"host:port" pair of FACETRAIL_FETCH_ALLOW (for a local receiver, and the tests). The connection
goes to the vetted address itself (no DNS rebinding between check and connect) and redirects
are not followed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Any

import httpcore
import httpx

from ..config import Settings
from ..crawl.fetch import is_public_address, parse_allow
from ..errors import Refused

TIMEOUT = 10  # seconds a webhook or an SMTP exchange may take
EMAIL = re.compile(r"[^@\s<>\"',;\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")


class NotifyRefused(Refused):
    """A webhook URL or email address a watch may not notify."""

    code = "bad_notify_target"


class DeliveryFailed(Exception):
    """A notification that did not arrive (the message says why)."""


def check_webhook(url: str, settings: Settings, resolve: bool = True) -> str:
    """`url`, if a watch may POST to it; NotifyRefused otherwise. With `resolve`, its host's
    addresses are checked now too (and again at each delivery)."""
    url = url.strip()
    if len(url) > 2000 or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise NotifyRefused("the webhook URL must be one line of at most 2000 characters, without spaces")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise NotifyRefused(f"the webhook URL is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise NotifyRefused("the webhook URL must be an absolute http:// or https:// URL with a host")
    if parsed.userinfo:
        raise NotifyRefused("the webhook URL may not hold credentials (user:password@)")
    if resolve:
        _vet(parsed, settings)
    return url


def check_email(address: str) -> str:
    address = address.strip()
    if not EMAIL.fullmatch(address) or len(address) > 320:
        raise NotifyRefused(f"{address!r} is not an email address (name@domain)")
    return address


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _vet(url: httpx.URL, settings: Settings) -> list[str]:
    """The addresses of the URL's host, if every one may be connected to; NotifyRefused otherwise."""
    host, port = url.raw_host.decode("ascii").strip("[]"), _port(url)
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = list(dict.fromkeys(str(info[4][0]) for info in
                                           socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)))
        except (OSError, ValueError) as exc:  # ValueError: a name the resolver cannot encode
            raise NotifyRefused(f"the webhook host {host} does not resolve: {exc}") from None
    allowed = parse_allow(settings.fetch_allow)
    for address in addresses:
        if not is_public_address(address) and (str(ipaddress.ip_address(address)), port) not in allowed:
            raise NotifyRefused(f"the webhook host {host} is at {address}, not a public address, and "
                                f"{address}:{port} is not in FACETRAIL_FETCH_ALLOW")
    if not addresses:
        raise NotifyRefused(f"the webhook host {host} has no address")
    return addresses


class _Pinned(httpcore.NetworkBackend):
    """Connects to the vetted address, whatever host name httpcore asks for (TLS still checks it)."""

    def __init__(self, address: str) -> None:
        self.address, self.system = address, httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return self.system.connect_tcp(self.address, port, timeout, local_address, socket_options)


def post_webhook(url: str, payload: dict, settings: Settings) -> None:
    """POST `payload` as JSON to `url`; any 2xx answer counts. Raises DeliveryFailed."""
    try:
        parsed = httpx.URL(check_webhook(url, settings, resolve=False))
        addresses = _vet(parsed, settings)
    except NotifyRefused as exc:
        raise DeliveryFailed(str(exc)) from None
    body = json.dumps(payload, sort_keys=True).encode()
    headers = [("Host", parsed.netloc.decode("ascii")), ("Content-Type", "application/json"),
               ("Content-Length", str(len(body))), ("User-Agent", settings.user_agent), ("Connection", "close")]
    origin = httpcore.Origin(parsed.raw_scheme, parsed.raw_host, _port(parsed))
    target = httpcore.URL(scheme=parsed.raw_scheme, host=parsed.raw_host, port=_port(parsed), target=parsed.raw_path)
    timeouts = {"connect": TIMEOUT, "read": TIMEOUT, "write": TIMEOUT, "pool": TIMEOUT}
    try:
        with httpcore.HTTPConnection(origin, ssl_context=httpx.create_ssl_context(),
                                     network_backend=_Pinned(addresses[0])) as connection:
            answer = connection.request("POST", target, headers=headers, content=body,
                                        extensions={"timeout": timeouts})
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= answer.status < 300:
        raise DeliveryFailed(f"the webhook answered HTTP {answer.status}")


def send_email(to: str, subject: str, text: str, settings: Settings) -> None:
    """Send a plain-text email through the configured SMTP server. Raises DeliveryFailed."""
    if not settings.smtp_host:
        raise DeliveryFailed("no SMTP server is configured (FACETRAIL_SMTP_HOST)")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.smtp_from, to, subject
    message.set_content(text)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
