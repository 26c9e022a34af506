"""The scope of a declared `site` source: which URLs the crawler may fetch.

facetrail only indexes declared sources (EU AI Act Art. 5(1)(e) prohibits untargeted scraping of
facial images), so a crawl never leaves its scope: every page, image and redirect target is checked.
Social-media and video platforms (`excluded_domains.txt`, editable) are never in any scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


@cache
def excluded_domains() -> frozenset[str]:
    """The domains of `excluded_domains.txt` (each covers its subdomains)."""
    text = files(__package__).joinpath("excluded_domains.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line)


def is_excluded(host: str) -> bool:
    """True if `host` (a name, no port) is an excluded domain or a subdomain of one."""
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in excluded_domains())


def _host_port(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http/https URL with a host; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed netloc or port
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.rstrip("."), port or _DEFAULT_PORTS[parts.scheme]


def url_host(url: str) -> str | None:
    """The host name of an http(s) URL, or None if it is not one."""
    parsed = _host_port(url)
    return parsed[1] if parsed else None


@dataclass(frozen=True)
class Scope:
    """Allowed `hosts` ("host" or "host:port") and optional URL `prefixes`.

    A URL is in scope if it is http(s), its host and port are listed (a bare "host" stands for the
    scheme's default port, 80 or 443) and, when prefixes are given, it starts with one of them
    (plain string comparison: end a directory prefix with "/"). Raises ValueError if a host is an
    excluded domain or a prefix is not itself in scope.
    """

    hosts: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("a scope needs at least one host")
        hosts = frozenset(host.strip().lower().rstrip(".") for host in self.hosts)
        object.__setattr__(self, "hosts", hosts)
        for host in hosts:
            checked = _host_port(f"http://{host}/")
            if checked is None or "/" in host or "@" in host:
                raise ValueError(f"scope host {host!r} is not a host or host:port")
            if is_excluded(checked[1]):
                raise ValueError(f"scope host {host!r} is an excluded domain (social media or video "
                                 "platform, see facetrail/crawl/excluded_domains.txt)")
        for prefix in self.prefixes:
            if self.refusal(prefix, check_prefix=False):
                raise ValueError(f"scope prefix {prefix!r} is not an http(s) URL on a scope host")

    def refusal(self, url: str, *, check_prefix: bool = True) -> str | None:
        """Why `url` may not be fetched ("excluded_domain" or "out_of_scope"), or None if it may.

        `check_prefix=False` checks the host only (robots.txt sits at the root, outside prefixes).
        """
        parsed = _host_port(url)
        if parsed is None:
            return "out_of_scope"
        scheme, host, port = parsed
        if is_excluded(host):
            return "excluded_domain"
        name = f"[{host}]" if ":" in host else host
        if f"{name}:{port}" not in self.hosts and not (port == _DEFAULT_PORTS[scheme] and name in self.hosts):
            return "out_of_scope"
        if check_prefix and self.prefixes and not url.startswith(self.prefixes):
            return "out_of_scope"
        return None

    def allows(self, url: str) -> bool:
        """True if `url` is in scope."""
        return self.refusal(url) is None
