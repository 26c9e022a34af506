"""A small static web site built from a folder of photos, for `make demo` to crawl.

    python scripts/demo_site.py build PHOTOS_DIR SITE_DIR   # write the site (overwrites SITE_DIR/*)
    python scripts/demo_site.py serve SITE_DIR --port 8765  # serve it on 127.0.0.1 only

The site exercises what the crawler must get right: nested pages and relative URLs, srcset,
alt text, an og:image, an image linked with <a href>, a face-less logo, a page whose
<meta name="robots" content="noimageindex"> forbids indexing its images, a /private/ folder
that robots.txt disallows, and links to a social-media site and another site (never followed).
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

SITE_NAME = "The Riverside Gazette (demo site)"
PHOTO_TYPES = (".jpg", ".jpeg", ".png", ".webp")
NAV = [("/", "Home"), ("/news/", "News"), ("/team/", "Team"), ("/archive/2019/", "Archive 2019")]
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"


def page(title: str, body: str, head: str = "") -> str:
    nav = " | ".join(f'<a href="{href}">{label}</a>' for href, label in NAV)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - {SITE_NAME}</title>
{head}</head>
<body>
<header><img src="/images/logo.png" alt="Riverside Gazette logo" width="120"> <nav>{nav}</nav></header>
<main>
<h1>{html.escape(title)}</h1>
{body}
</main>
<footer>Follow us on <a href="https://www.facebook.com/riverside.gazette.demo">Facebook</a>
(never crawled: social media is excluded) and see <a href="https://example.org/">our partner</a>
(outside this source's scope).</footer>
</body>
</html>
"""


def figure(src: str, alt: str, caption: str, srcset: str = "") -> str:
    extra = f' srcset="{srcset}"' if srcset else ""
    return (f'<figure><img src="{src}"{extra} alt="{html.escape(alt)}" width="480">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>\n")


def pages(p: list[str]) -> dict[str, str]:
    """Path in the site -> HTML. `p` holds the photo file names (cycled if there are few)."""
    def photo(i: int) -> str:
        return p[i % len(p)]

    def label(i: int) -> str:
        return Path(photo(i)).stem.replace("_", " ").title()

    return {
        "index.html": page("Welcome", (
            "<p>Local news from the riverside. Read the <a href=\"news/\">latest news</a>, meet the "
            "<a href=\"team/\">team</a> or browse the <a href=\"archive/2019/\">2019 archive</a>.</p>\n"
            + figure(f"images/{photo(1)}", f"{label(1)} at the town hall", "Front page photo",
                     srcset=f"images/small/{photo(1)} 480w, images/{photo(1)} 1200w")
            + '<p><a href="private/">Staff only</a></p>'),
            head=f'<meta property="og:image" content="/images/{photo(0)}">\n'
                 f'<meta property="og:image:alt" content="{html.escape(label(0))} speaking">\n'),
        "news/index.html": page("News", (
            "<p>This week's stories. More in the <a href=\"../archive/2019/\">archive</a>.</p>\n"
            + figure(f"../images/{photo(2)}", f"{label(2)} visiting the market", "Market day")
            + figure(f"../images/small/{photo(0)}", f"{label(0)} at the bridge opening", "Bridge opening"))),
        "team/index.html": page("Our team", (
            "<p>The people behind the paper.</p>\n"
            + figure(f"/images/{photo(3)}", f"{label(3)}, editor", "Our editor")
            + f'<p>Full-size portrait of our reporter: <a href="../images/{photo(4)}">{label(4)}</a></p>\n')),
        "archive/2019/index.html": page("Archive: 2019", (
            "<p>Stories from 2019. See also the <a href=\"gallery.html\">2019 photo gallery</a>.</p>\n"
            + figure(f"../../images/{photo(1)}", f"{label(1)} in 2019", "From the 2019 festival")
            + figure(f"../../images/{photo(5)}", f"{label(5)} in 2019", "Summer 2019"))),
        "archive/2019/gallery.html": page("Photo gallery 2019 (not for image search)", (
            "<p>The photographers asked search engines not to index these pictures "
            "(<code>noimageindex</code>), so facetrail leaves them out.</p>\n"
            + figure(f"../../images/small/{photo(5)}", f"{label(5)} at the gallery", "Gallery")),
            head='<meta name="robots" content="noimageindex">\n'),
        "private/index.html": page("Staff only", (
            "<p>robots.txt disallows this folder, so facetrail never fetches it.</p>\n"
            + figure(f"../images/small/{photo(2)}", f"{label(2)} backstage", "Backstage"))),
    }


def logo(path: Path) -> None:
    """A face-less image that appears on every page."""
    image = Image.new("RGB", (240, 60), "#1f4e79")
    ImageDraw.Draw(image).text((12, 22), "RIVERSIDE GAZETTE", fill="white")
    image.save(path)


def build(photos_dir: Path, site_dir: Path) -> None:
    photos = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in PHOTO_TYPES)
    if not photos:
        sys.exit(f"no photos ({', '.join(PHOTO_TYPES)}) in {photos_dir}")
    images = site_dir / "images"
    shutil.rmtree(site_dir, ignore_errors=True)
    (images / "small").mkdir(parents=True)
    for photo in photos:
        shutil.copyfile(photo, images / photo.name)
        with Image.open(photo) as image:  # a smaller copy, for srcset: different bytes, same face
            image.thumbnail((480, 480))
            image.save(images / "small" / photo.name)
    logo(images / "logo.png")
    for path, text in pages([p.name for p in photos]).items():
        (site_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (site_dir / path).write_text(text, encoding="utf-8")
    (site_dir / "robots.txt").write_text(ROBOTS_TXT, encoding="utf-8")
    print(f"Built {len(pages(['x']))} pages and {2 * len(photos) + 1} images in {site_dir}")


def add_story(photo: Path, site_dir: Path) -> None:
    """A story published after the first crawl: a new page, linked from the news, with a photo the
    site never had (a mirrored, cropped copy: new bytes, the same person)."""
    with Image.open(photo) as image:
        width, height = image.size
        fresh = image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        fresh = fresh.crop((width // 20, height // 20, width - width // 20, height - height // 20))
        fresh.save(site_dir / "images" / "story-photo.jpg", quality=88)
    label = photo.stem.replace("_", " ").title()
    (site_dir / "news" / "new-story.html").write_text(page("New story", (
        f"<p>Published today: {html.escape(label)} opens the new library.</p>\n"
        + figure("../images/story-photo.jpg", f"{label} at the library", "The new library"))), encoding="utf-8")
    news = site_dir / "news" / "index.html"
    text = news.read_text(encoding="utf-8")
    if "new-story.html" not in text:
        news.write_text(text.replace("<p>This week's stories.", '<p><a href="new-story.html">New story</a></p>\n'
                                     "<p>This week's stories.", 1), encoding="utf-8")
    print(f"Added news/new-story.html with a new photo of {label}")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(site_dir: Path, port: int) -> None:
    if not (site_dir / "index.html").is_file():
        sys.exit(f"no site in {site_dir}: run `build` first")
    handler = partial(QuietHandler, directory=str(site_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)  # loopback only
    except OSError as exc:
        sys.exit(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
    with server:
        print(f"Serving {site_dir} on http://127.0.0.1:{port}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="write the site from a folder of photos")
    b.add_argument("photos_dir", type=Path)
    b.add_argument("site_dir", type=Path)
    a = commands.add_parser("add-story", help="publish a new page with a new photo (for a second crawl)")
    a.add_argument("photo", type=Path)
    a.add_argument("site_dir", type=Path)
    s = commands.add_parser("serve", help="serve a built site on 127.0.0.1")
    s.add_argument("site_dir", type=Path)
    s.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if args.command == "build":
        build(args.photos_dir, args.site_dir)
    elif args.command == "add-story":
        add_story(args.photo, args.site_dir)
    else:
        serve(args.site_dir, args.port)


if __name__ == "__main__":
    main()
