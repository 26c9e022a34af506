"""Load: API clients and hostile uploaders against a real `facetrail serve` on loopback; prints
the figures for docs/figures.md.

    .venv/bin/python bench/load.py [--clients 50] [--hostile 3] [--seconds 60] [--dir /tmp/facetrail-load]

The data folder (built once in --dir, reused after) holds the labelled dev photos
(../shared/data/faces/dev) indexed with `facetrail index`, five investigator accounts for the
clients and one for the hostile uploaders, each with an API token (made with the CLI).

Then `facetrail serve` runs on a free loopback port (per-user search limits lifted with
FACETRAIL_SEARCH_LIMITS, so searches run instead of being rate-limited; the limits have their
own tests), and for --seconds, each in its own process so that the clients' work does not
delay the probe's clock:
  * --clients API clients in a closed loop: a search with a dev photo (1 in 10 a copy search),
    its result page (/api/v1/searches/{id}), then the crop and thumbnail of its first results
    under the search's URL. A client told 429 or 503 waits Retry-After, as a polite client does.
  * --hostile uploaders cycling through generated hostile files (the 368 KB 7999x7999 float
    TIFF, bombs in PNG/JPEG/TIFF/WebP, a 24 MP noise JPEG, a face photo enlarged to 4800 px, a
    16-bit PNG, many frames, huge EXIF, truncated and wrong-magic files) as searches, face
    listings and (a few, non-face files only) public opt-outs; they too honour Retry-After.
  * one probe: GET /healthz every 50 ms and the sign-in page (/login) every 0.5 s.

Figures: per route, answers by status, deliberate refusals (429, 503 busy) counted apart,
unexpected answers (5xx other than 503, a dropped connection, any status a route should not
give), p50/p99 latency of the answered requests that were not deliberately refused;
/healthz p50/p99/max; the server's RSS at rest and its peak (VmHWM of the `facetrail serve`
process, from /proc/<pid>/status). Targets (issue 12): 0 unexpected, /healthz p99 <= 50 ms,
peak RSS <= 600 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
FACETRAIL = [sys.executable, "-m", "facetrail"]
LEGAL_BASIS = "labelled test photographs, used with permission for testing"
SEARCH_FORM = {"purpose": "source-verification", "justification": "load benchmark", "case_ref": "LOAD-1"}
LIMITS = json.dumps({"investigator": {"hour": 10_000_000, "day": 10_000_000}})
CLIENT_ACCOUNTS = [f"loader{i}" for i in range(1, 6)]
DELIBERATE = {429, 503}
# What each route may answer besides 429/503: anything else is unexpected.
EXPECTED = {
    "POST /api/v1/search": {(200, None), (422, "no_face")},
    "GET /api/v1/searches/{id}": {(200, None)},
    "GET /api/v1/searches/{id}/faces/{face_id}.jpg": {(200, None)},
    "GET /api/v1/searches/{id}/images/{image_id}.jpg": {(200, None)},
    "GET /healthz": {(200, None)},
    "GET /login": {(200, None)},
}
HOSTILE_STATUSES = {200, 400, 413, 422}  # with a code and a detail


# --------------------------------------------------------------------------- the data folder


def run_cli(data_dir: Path, *args: str, token: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACETRAIL_")}
    if token:
        env["FACETRAIL_TOKEN"] = token
    done = subprocess.run([*FACETRAIL, "--data-dir", str(data_dir), *args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        sys.exit(f"facetrail {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def token_in(output: str) -> str:
    return next(word for word in output.split() if word.startswith("ft_"))


def build(data_dir: Path) -> dict[str, str]:
    """The data folder with the dev photos indexed and the accounts' tokens (built once)."""
    saved = data_dir / "load-tokens.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    started = time.monotonic()
    admin = token_in(run_cli(data_dir, "init", "admin", "--token"))
    tokens = {}
    for name in [*CLIENT_ACCOUNTS, "mallory"]:
        run_cli(data_dir, "user", "add", name, "--role", "investigator", token=admin)
        tokens[name] = token_in(run_cli(data_dir, "token", "create", "--user", name, "--name", "load", "--days", "30",
                                        token=admin))
    run_cli(data_dir, "user", "add", "sue", "--role", "supervisor", token=admin)
    supervisor = token_in(run_cli(data_dir, "token", "create", "--user", "sue", "--name", "load", "--days", "1",
                                  token=admin))
    today = time.strftime("%Y-%m-%d")
    expires = time.strftime("%Y-%m-%d", time.localtime(time.time() + 30 * 86400))
    members = [arg for name in [*CLIENT_ACCOUNTS, "mallory"] for arg in ("--member", name)]
    run_cli(data_dir, "case", "open", SEARCH_FORM["case_ref"], "--title", "load benchmark", "--purpose",
            SEARCH_FORM["purpose"], "--authority", "benchmark", "--authorisation-ref", "LOAD", "--authorised-on", today,
            "--expires", expires, *members, token=supervisor)
    print(run_cli(data_dir, "index", str(DEV), "--legal-basis", LEGAL_BASIS).strip().splitlines()[-1])
    descriptor = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(tokens, handle)
    print(f"data folder built in {time.monotonic() - started:.0f} s: {data_dir}")
    return tokens


# --------------------------------------------------------------------------- hostile files


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _png_bomb(width: int, height: int) -> bytes:
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    return _png(width, height, 1, 0, b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush())


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (64, 48), "grey"), "JPEG"))
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def hostile_files(face_photo: Path) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, has a face): heavy and broken uploads, generated (deterministic)."""
    rng = np.random.default_rng(12)
    noise = Image.fromarray(rng.integers(0, 256, (4000, 6000, 3), dtype=np.uint8)).filter(ImageFilter.BoxBlur(1))
    face = Image.open(face_photo).convert("RGB")
    face = face.resize((4800, round(4800 * face.height / face.width)), Image.BICUBIC)
    exif = Image.Exif()
    exif[0x010E] = "y" * 8_000_000
    frames = [Image.new("RGB", (320, 240), (k % 256, (k * 7) % 256, 0)) for k in range(300)]
    small = _save(Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), "JPEG")
    return [
        ("float-7999.tif", _save(Image.new("F", (7999, 7999), 0), "TIFF", compression="tiff_adobe_deflate"), False),
        ("bomb-30000.png", _png_bomb(30000, 30000), False),
        ("claims-60000.jpg", _jpeg_claiming(60000, 60000), False),
        ("grey16-7999.tif", _save(Image.new("I;16", (7999, 7999), 0), "TIFF", compression="tiff_adobe_deflate"), False),
        ("zeros-4000.webp", _save(Image.new("RGB", (4000, 4000), 0), "WEBP", lossless=True), False),
        ("noise-24mp.jpg", _save(noise, "JPEG", quality=80), False),
        ("face-4800.png", _save(face, "PNG"), True),
        ("face-4800.jpg", _save(face, "JPEG", quality=95), True),
        ("grey16-3000.png", _save(Image.fromarray(rng.integers(0, 65535, (3000, 3000), dtype=np.uint16)), "PNG"),
         False),
        ("frames-300.gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10), False),
        ("exif-8mb.png", _save(Image.new("RGB", (320, 240), "white"), "PNG", exif=exif), False),
        ("truncated.jpg", small[: len(small) // 2], False),
        ("random.jpg", rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes(), False),
    ]


# --------------------------------------------------------------------------- clients (each in a process)


def classify(route: str, status: int, code: str | None) -> str:
    if status in DELIBERATE:
        return "deliberate"
    if route.startswith("hostile"):
        return "expected" if status in HOSTILE_STATUSES and (status == 200 or code) else "unexpected"
    return "expected" if (status, None if status == 200 else code) in EXPECTED[route] else "unexpected"


class Record:
    def __init__(self) -> None:
        self.answers: dict[str, Counter] = defaultdict(Counter)  # route -> "status code" -> n
        self.latency: dict[str, list[float]] = defaultdict(list)  # route -> seconds (not deliberate)
        self.unexpected: list[str] = []

    def add(self, route: str, started: float, response: httpx.Response | None, problem: str = "") -> None:
        if response is None:
            self.answers[route]["transport error"] += 1
            self.unexpected.append(f"{route}: {problem}")
            return
        code = None
        if response.status_code != 200:
            try:
                code = response.json().get("code")
            except (ValueError, AttributeError):
                code = None
        kind = classify(route, response.status_code, code)
        self.answers[route][f"{response.status_code} {code or ''}".strip()] += 1
        if kind != "deliberate":
            self.latency[route].append(time.monotonic() - started)
        if kind == "unexpected":
            self.unexpected.append(f"{route}: {response.status_code} {response.text[:200]}")

    def result(self) -> dict:
        return {"answers": {k: dict(v) for k, v in self.answers.items()}, "latency": dict(self.latency),
                "unexpected": self.unexpected}


async def _request(record: Record, client: httpx.AsyncClient, route: str, method: str, path: str, **kwargs):
    started = time.monotonic()
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        record.add(route, started, None, repr(exc))
        return None
    record.add(route, started, response)
    return response


async def _polite_wait(response: httpx.Response, end: float) -> None:
    """Wait Retry-After (at most until the end of the run)."""
    wait = float(response.headers.get("Retry-After", "1"))
    await asyncio.sleep(max(0.0, min(wait, end - time.monotonic())))


async def _api_client(record: Record, client: httpx.AsyncClient, token: str, photos: list[bytes], seed: int,
                      end: float) -> None:
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < end:
        mode = "copies" if rng.random() < 0.1 else "faces"
        answer = await _request(record, client, "POST /api/v1/search", "POST", "/api/v1/search", headers=auth,
                                files={"image": ("photo", rng.choice(photos))}, data={**SEARCH_FORM, "mode": mode})
        if answer is None or answer.status_code in DELIBERATE:
            if answer is not None:
                await _polite_wait(answer, end)
            continue
        if answer.status_code != 200:
            continue
        body = answer.json()
        await _request(record, client, "GET /api/v1/searches/{id}", "GET", f"/api/v1/searches/{body['audit_id']}",
                       headers=auth)
        for item in (body.get("results") or body.get("copies") or [])[:2]:
            if "crop_url" in item:
                await _request(record, client, "GET /api/v1/searches/{id}/faces/{face_id}.jpg", "GET",
                               item["crop_url"], headers=auth)
            await _request(record, client, "GET /api/v1/searches/{id}/images/{image_id}.jpg", "GET",
                           item["thumb_url"], headers=auth)


async def _hostile_client(record: Record, client: httpx.AsyncClient, token: str, files: list, offset: int,
                          end: float) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    step = offset
    while time.monotonic() < end:
        name, data, has_face = files[step % len(files)]
        kind = ("search", "faces", "search", "opt-out")[step % 4] if not has_face else ("search", "faces")[step % 2]
        step += 1
        upload = {"image": (name, data)}
        if kind == "search":
            answer = await _request(record, client, "hostile POST /api/v1/search", "POST", "/api/v1/search",
                                    headers=auth, files=upload, data=SEARCH_FORM)
        elif kind == "faces":
            answer = await _request(record, client, "hostile POST /api/v1/faces", "POST", "/api/v1/faces",
                                    headers=auth, files=upload)
        else:
            answer = await _request(record, client, "hostile POST /api/v1/opt-out", "POST", "/api/v1/opt-out",
                                    files=upload, data={"statement": "yes"})
        if answer is not None and answer.status_code in DELIBERATE:
            await _polite_wait(answer, end)


def api_clients(url: str, tokens: list[str], photo_paths: list[str], count: int, seconds: float) -> dict:
    photos = [Path(p).read_bytes() for p in photo_paths]
    record = Record()

    async def main() -> None:
        end = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            await asyncio.gather(*(_api_client(record, client, tokens[i % len(tokens)], photos, i, end)
                                   for i in range(count)))

    asyncio.run(main())
    return record.result()


def hostile_clients(url: str, token: str, face_photo: str, count: int, seconds: float) -> dict:
    files = hostile_files(Path(face_photo))
    record = Record()

    async def main() -> None:
        end = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            await asyncio.gather(*(_hostile_client(record, client, token, files, i * 5, end) for i in range(count)))

    asyncio.run(main())
    return record.result()


def probe(url: str, seconds: float) -> dict:
    record = Record()
    end = time.monotonic() + seconds
    n = 0
    with httpx.Client(base_url=url, timeout=300) as client:
        while time.monotonic() < end:
            for route, path in [("GET /healthz", "/healthz")] + ([("GET /login", "/login")] if n % 10 == 0 else []):
                started = time.monotonic()
                try:
                    record.add(route, started, client.get(path))
                except httpx.HTTPError as exc:
                    record.add(route, started, None, repr(exc))
            n += 1
            time.sleep(0.05)
    return record.result()


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--hostile", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/facetrail-load"), help="data folder (built once)")
    parser.add_argument("--cpu-workers", type=int, help="FACETRAIL_CPU_WORKERS for the server (default: its own)")
    parser.add_argument("--cpu-queue", type=int, help="FACETRAIL_CPU_QUEUE for the server (default: its own)")
    args = parser.parse_args()

    tokens = build(args.dir)
    with (DEV / "manifest.csv").open() as handle:
        labelled = [str(DEV / row["path"]) for row in csv.DictReader(handle) if row["identity"] not in ("none", "unknown")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FACETRAIL_")},
           "FACETRAIL_SEARCH_LIMITS": LIMITS}
    if args.cpu_workers is not None:
        env["FACETRAIL_CPU_WORKERS"] = str(args.cpu_workers)
    if args.cpu_queue is not None:
        env["FACETRAIL_CPU_QUEUE"] = str(args.cpu_queue)
    log_path = args.dir / "serve.log"  # a file, not a pipe: the access log would fill a pipe and stall the server
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w")  # private, like the folder
    server = subprocess.Popen([*FACETRAIL, "--data-dir", str(args.dir), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(1200):  # until it answers (the lifespan loads the face model)
            if server.poll() is not None:
                sys.exit(f"facetrail serve stopped: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        warm = httpx.post(f"{url}/api/v1/search", headers={"Authorization": f"Bearer {tokens['loader1']}"},
                          files={"image": ("w.jpg", Path(labelled[0]).read_bytes())}, data=SEARCH_FORM, timeout=300)
        assert warm.status_code == 200, warm.text
        at_rest, cpu_before = status_mb(server.pid, "VmRSS"), cpu_seconds(server.pid)
        with ProcessPoolExecutor(3, mp_context=get_context("spawn")) as pool:
            jobs = [
                pool.submit(probe, url, args.seconds),
                pool.submit(api_clients, url, [tokens[n] for n in CLIENT_ACCOUNTS], labelled, args.clients,
                            args.seconds),
                pool.submit(hostile_clients, url, tokens["mallory"], labelled[0], args.hostile, args.seconds),
            ]
            results = [job.result() for job in jobs]
        peak, cpu_used = status_mb(server.pid, "VmHWM"), cpu_seconds(server.pid) - cpu_before
        alive = server.poll() is None and httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    report(args, results, at_rest, peak, cpu_used, alive, log_path.read_text(errors="replace").count("Traceback"))


def report(args, results: list[dict], at_rest: float, peak: float, cpu_used: float, alive: bool,
           tracebacks: int) -> None:
    answers: dict[str, Counter] = defaultdict(Counter)
    latency: dict[str, list[float]] = defaultdict(list)
    unexpected: list[str] = []
    for result in results:
        for route, counts in result["answers"].items():
            answers[route].update(counts)
        for route, values in result["latency"].items():
            latency[route].extend(values)
        unexpected.extend(result["unexpected"])
    print(f"\n{args.clients} API clients + {args.hostile} hostile uploaders, {args.seconds:.0f} s, "
          f"{os.cpu_count()} cores, server CPU {cpu_used:.0f} s ({cpu_used / args.seconds:.2f} cores)")
    print(f"{'route':<52} {'requests':>8} {'deliberate':>10} {'unexpected':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for route in sorted(answers):
        counts = answers[route]
        deliberate = sum(n for key, n in counts.items() if key.split()[0] in ("429", "503"))
        bad = sum(1 for line in unexpected if line.startswith(route + ":"))
        print(f"{route:<52} {sum(counts.values()):>8} {deliberate:>10} {bad:>10} "
              f"{percentile(latency[route], 50):>8.0f} {percentile(latency[route], 99):>8.0f}")
    for route in sorted(answers):
        print(f"  {route}: " + ", ".join(f"{key} x{n}" for key, n in sorted(answers[route].items())))
    health = latency["GET /healthz"]
    print(f"/healthz: {len(health)} probes, p50 {percentile(health, 50):.1f} ms, p99 {percentile(health, 99):.1f} ms, "
          f"max {max(health) * 1000 if health else float('nan'):.1f} ms")
    print(f"server RSS: {at_rest:.0f} MB at rest, peak (VmHWM) {peak:.0f} MB; alive after: {alive}; "
          f"tracebacks in its log: {tracebacks}")
    print(f"unexpected answers: {len(unexpected)}")
    for line in unexpected[:20]:
        print("  " + line)


if __name__ == "__main__":
    main()
