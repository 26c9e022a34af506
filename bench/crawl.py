"""Crawl benchmark: `facetrail crawl` of a synthetic local site, end to end.

    .venv/bin/python bench/crawl.py [--pages 300] [--photos-per-page 2] [--workers N] [--urls]
    .venv/bin/python bench/crawl.py --huge-page [--huge-images 784000]

Builds a site in memory and serves it from this process on 127.0.0.1 (an ephemeral port, a
threaded http.server): an index page, section pages and PAGES article pages, each article
showing PHOTOS_PER_PAGE photos from the dev set (../shared/data/faces/dev, read in place and
cycled; 49 of its 286 photos are face-less distractors), one generated face-less banner and
the site logo (the same URL on every page). Every photo URL serves distinct bytes (a JPEG
comment or PNG text chunk is added; the pixels are unchanged), so each is analysed rather
than settled as a duplicate.

Then, through the real command line (what the `facetrail` entry point runs; a fresh data
folder each; FACETRAIL_CRAWL_DELAY=0, FACETRAIL_FETCH_ALLOW=the site), it runs:
- crawl only: the site with every image answered with `X-Robots-Tag: noimageindex`, so each
  is fetched in full and then skipped, never decoded or analysed;
- crawl end to end: `source add` + `crawl`, fetching, analysing and storing every face;
- with --urls, `ingest urls` over the same image URLs (fetched one at a time).

It prints pages/s, images/s (fetched) and faces/s against wall time (which includes process
start and model loading), with the command's own seconds. Pages and images are counted by the
server; new images and faces come from the command's summary.

--huge-page instead serves one page of HUGE_IMAGES distinct <img> URLs (784,000: 19.5 MB, the
hostile page of issue 13) whose first 500 images exist, and runs `facetrail.crawl.crawl` on it in a
child process with the default limits, printing the child's peak RSS (the target: under 300 MB),
the seconds, and the pages and images it reported.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
PAGES_PER_SECTION = 25
TYPES = {".jpg": "image/jpeg", ".png": "image/png"}
SUMMARY = re.compile(r"(?:Done|Interrupted): (?:(\d+) pages, )?(\d+) files, (\d+) new images, (\d+) faces")


def tagged(data: bytes, tag: str) -> bytes:
    """The same image with `tag` embedded (distinct bytes, same pixels)."""
    if data[:2] == b"\xff\xd8":  # JPEG: a comment segment right after SOI
        body = tag.encode()
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: a tEXt chunk right after IHDR (which ends at byte 33)
        body = b"Comment\0" + tag.encode()
        crc = zlib.crc32(b"tEXt" + body)
        return data[:33] + struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", crc) + data[33:]
    raise ValueError("not a JPEG or PNG file")


def banner(seed: int) -> bytes:
    """A face-less 320x200 graphic, different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (320, 200), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y = rng.randrange(300), rng.randrange(180)
        draw.rectangle((x, y, x + rng.randrange(20, 120), y + rng.randrange(10, 60)),
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((10, 10), f"banner {seed}", fill="white")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def html(title: str, body: str) -> bytes:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{title} - bench site</title></head>\n<body><img src="/img/logo.png" alt="logo">\n'
            f'<h1>{title}</h1>\n{body}\n</body></html>\n').encode()


@dataclass
class Site:
    """Path -> (content type, body); the server counts what it serves."""

    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    noindex_images: bool = False  # answer images with X-Robots-Tag: noimageindex
    served: Counter = field(default_factory=Counter)  # "page", "image", "other"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, noindex_images: bool) -> None:
        with self.lock:
            self.served.clear()
            self.noindex_images = noindex_images

    def image_urls(self, base: str) -> list[str]:
        return [base + path for path, (kind, _) in self.routes.items() if kind.startswith("image/")]

    def pages(self) -> int:
        return sum(kind.startswith("text/html") for kind, _ in self.routes.values())


def build(pages: int, photos_per_page: int) -> tuple[Site, int, int]:
    """The site; also the number of distinct photo and banner images."""
    photos = sorted(p for p in DEV.rglob("*") if p.suffix.lower() in TYPES)
    if not photos:
        sys.exit(f"no photos in {DEV}")
    originals = {p: p.read_bytes() for p in photos}
    site = Site()
    logo = Image.new("RGB", (120, 40), "#1f4e79")
    ImageDraw.Draw(logo).text((8, 14), "BENCH SITE", fill="white")
    out = io.BytesIO()
    logo.save(out, "PNG")
    site.routes["/img/logo.png"] = ("image/png", out.getvalue())
    site.routes["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /nowhere/\n")
    sections = (pages + PAGES_PER_SECTION - 1) // PAGES_PER_SECTION
    site.routes["/"] = ("text/html; charset=utf-8", html("Home", "\n".join(
        f'<p><a href="/s{s}/">Section {s}</a></p>' for s in range(sections))))
    for s in range(sections):
        first, last = s * PAGES_PER_SECTION, min(pages, (s + 1) * PAGES_PER_SECTION)
        site.routes[f"/s{s}/"] = ("text/html; charset=utf-8", html(f"Section {s}", "\n".join(
            f'<p><a href="{n}.html">Article {n}</a></p>' for n in range(first, last))))
        for n in range(first, last):
            body = []
            for j in range(photos_per_page):
                photo = photos[(n * photos_per_page + j) % len(photos)]
                path = f"/img/p{n}-{j}{photo.suffix.lower()}"
                site.routes[path] = (TYPES[photo.suffix.lower()], tagged(originals[photo], f"bench {path}"))
                body.append(f'<img src="{path}" alt="photo {j} of article {n}">')
            site.routes[f"/img/b{n}.png"] = ("image/png", banner(n))
            body.append(f'<img src="/img/b{n}.png" alt="">')
            following = (n + 1) % pages
            body.append(f'<p><a href="/s{s}/">Section {s}</a> <a href="/s{following // PAGES_PER_SECTION}/'
                        f'{following}.html">Next</a> <a href="/">Home</a></p>')
            site.routes[f"/s{s}/{n}.html"] = ("text/html; charset=utf-8",
                                              html(f"Article {n}", "\n".join(body)))
    return site, pages * photos_per_page, pages


def serve(site: Site) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            kind, body = site.routes.get(self.path, ("text/plain", b"not found"))
            is_image = kind.startswith("image/")
            etag = f'"{zlib.crc32(body):08x}"'
            if is_image and self.headers.get("If-None-Match") == etag:  # conditional re-crawl: unchanged
                with site.lock:
                    site.served["not_modified"] += 1
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            with site.lock:
                site.served["page" if kind.startswith("text/html") else "image" if is_image else "other"] += 1
                site.served["bytes"] += len(body)
            try:
                self.send_response(200 if self.path in site.routes else 404)
                if is_image:
                    self.send_header("ETag", etag)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if is_image and site.noindex_images:
                    self.send_header("X-Robots-Tag", "noimageindex")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback only
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@dataclass
class Run:
    wall: float
    pages: int  # HTML pages served
    images: int  # images served
    new_images: int
    faces: int
    cli_seconds: float | None


def cli(data_dir: str, env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "facetrail", "--data-dir", data_dir, *args]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run(site: Site, env: dict[str, str], noindex_images: bool, command: list[str],
        setup: list[str] | None) -> Run:
    """Run `setup`, then time `command` (CLI argument lists) in a fresh data folder."""
    with tempfile.TemporaryDirectory(prefix="facetrail-bench-") as data_dir:
        if setup:
            cli(data_dir, env, *setup)
        site.reset(noindex_images)
        started = time.perf_counter()
        stdout = cli(data_dir, env, *command)
        wall = time.perf_counter() - started
    found = SUMMARY.search(stdout)
    if found is None:
        sys.exit(f"no summary in the output:\n{stdout}")
    seconds = re.search(r"; ([\d.]+) s, ", stdout)
    return Run(wall, site.served["page"], site.served["image"], int(found.group(3)), int(found.group(4)),
               float(seconds.group(1)) if seconds else None)


def report(name: str, r: Run) -> None:
    def rate(n: int) -> str:
        return f"{n / r.wall:6.1f}" if n else "     -"

    own = f"(command's own {r.cli_seconds:.1f} s)" if r.cli_seconds is not None else ""
    print(f"{name:<26} {r.wall:6.1f} s {rate(r.pages)} pages/s {rate(r.images)} images/s "
          f"{rate(r.faces)} faces/s"
          f"   {r.pages} pages, {r.images} images fetched, {r.new_images} analysed, {r.faces} faces {own}",
          flush=True)


def huge_page(images: int) -> Site:
    """One page listing `images` distinct image URLs; the first 500 answer with a small PNG."""
    site = Site()
    site.routes["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    body = "".join(f'<img src="/i/{n:07d}.png">' for n in range(images))
    site.routes["/"] = ("text/html; charset=utf-8", html("Huge", body))
    for n in range(500):
        site.routes[f"/i/{n:07d}.png"] = ("image/png", banner(n))
    return site


def realistic(pages: int) -> tuple[Site, int]:
    """A site of `pages` article pages written the ways real sites show images (a plain <img>, a
    lazysizes data-src with a placeholder, a <picture> with data-srcset, a jQuery-lazyload
    data-original with a <noscript> fallback, an inline-style background), the last tenth reachable
    only through the sitemap (robots.txt names an index, which names a gzip file), the rest through
    section pages. Each image is a distinct ~10 KB JPEG. Also returns the number of distinct images."""
    import gzip

    rng = random.Random(7)
    site = Site()
    linked, hidden = pages - pages // 10, pages // 10
    site.routes["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\nSitemap: /maps/index.xml\n")
    sections = (linked + PAGES_PER_SECTION - 1) // PAGES_PER_SECTION
    site.routes["/"] = ("text/html; charset=utf-8", html("Home", "\n".join(
        f'<p><a href="/s{s}/">Section {s}</a></p>' for s in range(sections))))
    site.routes["/img/logo.png"] = ("image/png", banner(0))  # on every page (html())
    images = 1

    def photo() -> str:
        nonlocal images
        images += 1
        picture = Image.effect_noise((96, 96), 60).convert("RGB")
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=int(rng.uniform(80, 95)))
        path = f"/img/{images}.jpg"
        site.routes[path] = ("image/jpeg", out.getvalue())
        return path

    for n in range(pages):
        body = [f'<img src="{photo()}" alt="plain">',
                f'<img class="lazyload" src="/img/grey.gif" data-src="{photo()}" alt="lazy">',
                f'<picture><source data-srcset="{photo()} 1x"><img class="lazyload" alt="picture"></picture>',
                f'<img class="lazy" data-original="{(p := photo())}"><noscript><img src="{p}" alt="ns"></noscript>',
                f'<div style="background-image: url(\'{photo()}\')" aria-label="hero"></div>']
        site.routes[f"/a/{n}.html"] = ("text/html; charset=utf-8", html(f"Article {n}", "\n".join(body)))
    for s in range(sections):
        site.routes[f"/s{s}/"] = ("text/html; charset=utf-8", html(f"Section {s}", "\n".join(
            f'<p><a href="/a/{n}.html">Article {n}</a></p>'
            for n in range(s * PAGES_PER_SECTION, min(linked, (s + 1) * PAGES_PER_SECTION)))))
    urls = "".join(f"<url><loc>/a/{n}.html</loc></url>" for n in range(linked, linked + hidden))
    site.routes["/maps/a.xml.gz"] = ("application/gzip", gzip.compress(
        f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()))
    site.routes["/maps/index.xml"] = ("application/xml", b'<?xml version="1.0"?><sitemapindex xmlns="http://www.'
                                      b'sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>/maps/a.xml.gz</loc>'
                                      b'</sitemap></sitemapindex>')
    return site, images


def site_child(url: str, present: int, pages: int, saved: str) -> None:
    """Crawl the realistic site in this process, asking conditionally for the images whose validators
    `saved` holds (JSON, as `facetrail crawl` keeps them in fetch_validators); save the new ones."""
    import json
    from facetrail.crawl import Scope, crawl
    from facetrail.crawl.fetch import FetchPolicy, SafeFetcher, parse_allow

    host = url.split("/")[2]
    fetcher = SafeFetcher(FetchPolicy(allow=parse_allow(host)))
    validators = {url: tuple(pair) for url, pair in json.loads(Path(saved).read_text() or "{}").items()}
    listed: set[str] = set()

    def on_image(image) -> None:
        if image.etag:
            validators[image.url] = (image.etag, image.last_modified)

    for name in ("re-crawl" if validators else "first crawl",):
        started = time.perf_counter()
        summary = crawl([url], Scope(frozenset({host})), fetcher, delay=0, max_pages=pages + 100, max_depth=5,
                        user_agent="facetrail-bench/0.1 (+http://127.0.0.1/)", validators=dict(validators),
                        on_page=lambda page: listed.update(ref.url for ref in page.images), on_image=on_image)
        seconds = time.perf_counter() - started
        print(f"{name}: {seconds:.1f} s, {summary.pages} pages ({summary.pages / seconds:.1f}/s), "
              f"{summary.images} images downloaded ({summary.images / seconds:.1f}/s), {summary.not_modified} "
              f"not modified; images found {len(listed)} of {present}; skipped {dict(summary.skipped)}", flush=True)
    Path(saved).write_text(json.dumps(validators))


def crawl_child(url: str) -> None:
    """Crawl `url` in this process with the default limits; print what it cost as one line."""
    import resource

    from facetrail.crawl import Scope, crawl
    from facetrail.crawl.fetch import FetchPolicy, SafeFetcher, parse_allow

    host = url.split("/")[2]
    counts = Counter()
    started = time.perf_counter()
    summary = crawl([url], Scope(frozenset({host})), SafeFetcher(FetchPolicy(allow=parse_allow(host))), delay=0,
                    user_agent="facetrail-bench/0.1 (+http://127.0.0.1/)",
                    on_page=lambda page: counts.update(listed=len(page.images)),
                    on_image=lambda image: counts.update(images=1),
                    on_error=lambda url, reason, message: counts.update([reason]))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"crawl of the huge page: {time.perf_counter() - started:.1f} s, peak RSS {rss:.0f} MB, "
          f"{summary.pages} page, {counts['listed']} images listed, {counts['images']} fetched, "
          f"skipped {dict(summary.skipped)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300, help="article pages (default 300)")
    parser.add_argument("--photos-per-page", type=int, default=2, help="dev photos per article (default 2)")
    parser.add_argument("--workers", type=int, help="analysis processes (default: one per core)")
    parser.add_argument("--urls", action="store_true", help="also time `ingest urls` over the image URLs")
    parser.add_argument("--skip-crawl-only", action="store_true",
                        help="do not time the crawl without analysis")
    parser.add_argument("--huge-page", action="store_true", help="measure the crawl of one huge page instead")
    parser.add_argument("--huge-images", type=int, default=784_000, help="distinct images of the huge page")
    parser.add_argument("--realistic", action="store_true", help="crawl a 1,000-page site with lazy images "
                        "and a sitemap twice (crawler only), measuring the re-crawl")
    parser.add_argument("--crawl-child", help=argparse.SUPPRESS)
    parser.add_argument("--site-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crawl_child:
        crawl_child(args.crawl_child)
        return
    if args.site_child:
        site_child(args.site_child[0], int(args.site_child[1]), int(args.site_child[2]), args.site_child[3])
        return
    if args.realistic:
        pages = 1000 if args.pages == 300 else args.pages
        site, present = realistic(pages)
        server = serve(site)
        try:
            print(f"realistic site: {pages} articles ({pages // 10} only in the sitemap), {present} distinct "
                  f"images (5 per article, 4 of them lazy or fallback), "
                  f"{sum(len(body) for _, body in site.routes.values()) / 1e6:.1f} MB", flush=True)
            served = []
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as saved:
                pass
            try:
                for _ in range(2):
                    site.reset(False)
                    subprocess.run([sys.executable, __file__, "--site-child",
                                    f"http://127.0.0.1:{server.server_address[1]}/", str(present), str(pages),
                                    saved.name], check=True)
                    served.append(dict(site.served))
                    print(f"  served: {served[-1]}", flush=True)
            finally:
                os.unlink(saved.name)
            print(f"re-crawl bytes: {served[1]['bytes'] / served[0]['bytes']:.1%} of the first crawl's", flush=True)
        finally:
            server.shutdown()
            server.server_close()
        return
    if args.huge_page:
        site = huge_page(args.huge_images)
        server = serve(site)
        try:
            print(f"huge page: {len(site.routes['/'][1]) / 1e6:.1f} MB, {args.huge_images} distinct <img> URLs",
                  flush=True)
            subprocess.run([sys.executable, __file__, "--crawl-child", f"http://127.0.0.1:{server.server_address[1]}/"],
                           check=True)
        finally:
            server.shutdown()
            server.server_close()
        return

    site, photos, banners = build(args.pages, args.photos_per_page)
    server = serve(site)
    host = f"127.0.0.1:{server.server_address[1]}"
    base = f"http://{host}"
    total = sum(len(body) for _, body in site.routes.values())
    print(f"site {base}/: {site.pages()} pages ({args.pages} articles), {photos} photos from the dev set "
          f"(distinct bytes), {banners} face-less banners and a logo on every page; {total / 1e6:.1f} MB; "
          f"{os.cpu_count()} cores, workers {args.workers or 'default'}", flush=True)

    env = {**os.environ, "FACETRAIL_FETCH_ALLOW": host, "FACETRAIL_CRAWL_DELAY": "0", "COLUMNS": "250"}
    env.pop("FACETRAIL_DATA_DIR", None)
    workers = ["--workers", str(args.workers)] if args.workers else []
    add = ["source", "add", "bench", "--url", f"{base}/",
           "--legal-basis", "synthetic benchmark site on loopback"]
    crawl = ["crawl", "bench", "--max-pages", str(site.pages() + 10), "--max-depth", "10", *workers]
    try:
        if not args.skip_crawl_only:
            report("crawl only (noimageindex)", run(site, env, True, crawl, add))
        report("crawl end to end", run(site, env, False, crawl, add))
        if args.urls:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
                listing.write("\n".join(site.image_urls(base)) + "\n")
            try:
                report("ingest urls", run(site, env, False, [
                    "ingest", "urls", listing.name, "--source", "bench-urls",
                    "--legal-basis", "synthetic benchmark images on loopback", *workers], None))
            finally:
                os.unlink(listing.name)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
