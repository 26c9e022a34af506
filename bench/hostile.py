"""Hostile uploads and ingest: a generated corpus (tests/hostile.py) through the API of a real
`facetrail serve` and through `facetrail index`; prints the figures for docs/figures.md.

    .venv/bin/python bench/hostile.py --count 1050

Figures: per family, how each file was answered (HTTP status and code; index reason); server
errors (5xx), crashes (a dropped connection, a dead server, an index exit code other than 0,
an analysis reported as `failed`), files given no reason; the server's RSS at rest and its
peak (VmHWM); `facetrail index` peak RSS (main process, each analysis process). Then one decode
of the 368 KB float TIFF (7999 x 7999) in a fresh process: peak RSS with the decode budget,
without one (the strip-by-strip pipeline alone), and with the decoder of an older commit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import FAMILIES, corpus
from tests.support import LEGAL_BASIS, SEARCH_FORM, add_accounts

from facetrail.store import Database

PYTHON = sys.executable
FACETRAIL = [PYTHON, "-m", "facetrail"]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = [int(p) for p in found]
    return pids + [q for p in pids for q in children(p)]


class Sampler(threading.Thread):
    """Peak RSS of a process and of each of its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop, self.main, self.others = pid, threading.Event(), 0.0, {}

    def run(self) -> None:
        while not self.stop.is_set():
            self.main = max(self.main, rss_mb(self.pid, "VmHWM"))
            for child in children(self.pid):
                self.others[child] = max(self.others.get(child, 0.0), rss_mb(child, "VmHWM"))
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def through_api(data_dir: Path, files, env: dict[str, str]) -> dict:
    db = Database(f"sqlite:///{data_dir / 'facetrail.db'}")
    token = add_accounts(db)["ivan"]
    db.close()
    port = free_port()
    server = subprocess.Popen([*FACETRAIL, "--data-dir", str(data_dir), "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300)
    warm = next(f for f in files if f.family == "high_depth")  # a valid image: loads the face model
    client.post("/api/v1/search", files={"image": (warm.name, warm.data)}, data=SEARCH_FORM)
    at_rest = rss_mb(server.pid)
    answers: dict[str, Counter] = defaultdict(Counter)
    server_errors, crashes, no_reason, slowest = [], [], [], (0.0, "")
    started = time.monotonic()
    for f in files:
        t = time.monotonic()
        try:
            response = client.post("/api/v1/search", files={"image": (f.name, f.data)}, data=SEARCH_FORM)
        except httpx.TransportError as exc:
            crashes.append((f.name, repr(exc)))
            continue
        slowest = max(slowest, (time.monotonic() - t, f.name))
        if response.status_code >= 500:
            server_errors.append((f.name, response.status_code, response.text[:200]))
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {}
        code = "results" if response.status_code == 200 and "results" in body else body.get("code")
        if not code or (response.status_code != 200 and not body.get("detail")):
            no_reason.append(f.name)
        answers[f.family][f"{response.status_code} {code}"] += 1
    seconds = time.monotonic() - started
    alive = server.poll() is None and httpx.get(f"{url}/healthz").status_code == 200
    peak = rss_mb(server.pid, "VmHWM")
    server.terminate()
    _, stderr = server.communicate(timeout=60)
    tracebacks = stderr.decode(errors="replace").count("Traceback")
    return {"answers": answers, "server_errors": server_errors, "crashes": crashes, "no_reason": no_reason,
            "alive": alive, "rss_at_rest": at_rest, "rss_peak": peak, "seconds": seconds,
            "slowest": slowest, "tracebacks": tracebacks}


def through_index(data_dir: Path, folder: Path, workers: int, env: dict[str, str]) -> dict:
    process = subprocess.Popen(
        [*FACETRAIL, "--data-dir", str(data_dir), "index", str(folder), "--workers", str(workers),
         "--legal-basis", LEGAL_BASIS, "--verbose"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    sampler = Sampler(process.pid)
    sampler.start()
    started = time.monotonic()
    out, err = process.communicate()
    seconds = time.monotonic() - started
    sampler.stop.set()
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    done = re.search(r"Done: (\d+) files, (\d+) new images, \d+ faces, (\d+) duplicates, \d+ unchanged, "
                     r"skipped: (.*?); ", out.replace("\n", " "))
    skipped = {reason: int(n) for n, reason in re.findall(r"(\d+) (\w+)", done.group(4))} if done else {}
    listed = re.findall(r"skipped .*?/(\d{5}-[\w-]+\.\w+): (\w+) \(", err.replace("\n", " "))
    return {"exit": process.returncode, "files": int(done.group(1)) if done else 0,
            "images": int(done.group(2)) if done else 0, "duplicates": int(done.group(3)) if done else 0,
            "skipped": skipped, "listed": dict(listed), "tracebacks": (out + err).count("Traceback"),
            "main_peak": sampler.main, "worker_peaks": sorted(sampler.others.values(), reverse=True)[:workers],
            "seconds": seconds}


DECODE_ONE = """
import importlib.util, sys
path, budget, module = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if module == "-":
    from facetrail.images import decode as dec
    from facetrail.images.decode import Limits
else:
    spec = importlib.util.spec_from_file_location("old_decode", module)
    dec_module = sys.modules["old_decode"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dec_module)
    dec, Limits = dec_module.decode, dec_module.Limits
data = open(path, "rb").read()
limits = Limits(max_decode_bytes=budget) if budget else Limits()
try:
    decoded = dec(data, limits); result = "decoded %dx%d" % (decoded.pixels.shape[1], decoded.pixels.shape[0])
except Exception as exc:
    result = "refused: %s" % exc
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(peak / 1024, result)  # VmHWM: this program's own peak (ru_maxrss would carry the parent's across exec)
"""


def one_decode(path: Path, budget: int, module: str = "-") -> tuple[float, str]:
    out = subprocess.run([PYTHON, "-c", DECODE_ONE, str(path), str(budget), module], capture_output=True,
                         text=True, check=True).stdout.strip()
    peak, result = out.split(" ", 1)
    return float(peak), result


def old_decoder(commit: str, folder: Path) -> str | None:
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/facetrail/images/decode.py"],
                                capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return None
    path = folder / f"decode_{commit}.py"
    path.write_text(source.replace("from ..errors import", "from facetrail.errors import"))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1050, help="hostile files to generate")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="analysis processes of facetrail index")
    parser.add_argument("--old-commit", default="e33e407", help="the decoder to compare with (before the budget)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="facetrail-hostile-") as tmp:
        tmp = Path(tmp)
        started = time.monotonic()
        files = list(corpus(args.count, args.seed))
        folder = tmp / "hostile"
        folder.mkdir()
        for f in files:
            (folder / f.name).write_bytes(f.data)
        size = sum(len(f.data) for f in files)
        print(f"corpus: {len(files)} files in {len(FAMILIES)} families ({Counter(f.family for f in files)}), "
              f"{size / 2**20:.0f} MB, generated in {time.monotonic() - started:.0f} s")
        env = {**os.environ, "FACETRAIL_SEARCH_LIMITS": json.dumps({"investigator": {"hour": 10**6, "day": 10**6}}),
               "FACETRAIL_REPEAT_SUBJECT_COUNT": "1000000"}

        api = through_api(tmp / "api-data", files, env)
        print(f"\nAPI (POST /api/v1/search, one client, {api['seconds']:.0f} s; slowest answer "
              f"{api['slowest'][0]:.1f} s for {api['slowest'][1]}):")
        for family in FAMILIES:
            print(f"  {family:14} " + ", ".join(f"{n} x {a}" for a, n in api["answers"][family].most_common()))
        print(f"  server errors (5xx): {len(api['server_errors'])} {api['server_errors'][:5]}")
        print(f"  crashes (dropped connections): {len(api['crashes'])} {api['crashes'][:5]}; server alive after: "
              f"{api['alive']}; tracebacks in its log: {api['tracebacks']}")
        print(f"  files given no code or reason: {len(api['no_reason'])} {api['no_reason'][:5]}")
        print(f"  server RSS: {api['rss_at_rest']:.0f} MB at rest (model loaded), peak {api['rss_peak']:.0f} MB")

        index = through_index(tmp / "index-data", folder, args.workers, env)
        accounted = index["images"] + index["duplicates"] + sum(index["skipped"].values())
        print(f"\nfacetrail index --workers {args.workers} ({index['seconds']:.0f} s): exit {index['exit']}, "
              f"{index['files']} files: {index['images']} new images, {index['duplicates']} duplicates, skipped "
              + ", ".join(f"{n} {r}" for r, n in sorted(index["skipped"].items())))
        print(f"  files given no reason: {len(files) - accounted}; 'failed' analyses: "
              f"{index['skipped'].get('failed', 0)}; tracebacks: {index['tracebacks']}; skipped files listed "
              f"by name: {len(index['listed'])}")
        by_family: dict[str, Counter] = defaultdict(Counter)
        for f in files:
            by_family[f.family][index["listed"].get(f.name, "indexed")] += 1
        for family in FAMILIES:
            print(f"  {family:14} " + ", ".join(f"{n} {r}" for r, n in by_family[family].most_common()))
        print(f"  peak RSS: main process {index['main_peak']:.0f} MB, analysis processes "
              + ", ".join(f"{p:.0f} MB" for p in index["worker_peaks"]))

        tiff = folder / next(f.name for f in files if f.family == "bomb")  # the first bomb: the float TIFF
        print(f"\none decode of the {tiff.stat().st_size / 1000:.0f} KB float TIFF (7999 x 7999), peak RSS of a "
              f"fresh process (Python, numpy and Pillow alone: ~33 MB):")
        for label, budget, module in (("default budget", 0, "-"), ("no budget (2**40)", 2**40, "-")):
            peak, result = one_decode(tiff, budget, module)
            print(f"  {label:20} {peak:5.0f} MB  {result}")
        old = old_decoder(args.old_commit, tmp)
        if old:
            peak, result = one_decode(tiff, 0, old)
            print(f"  {'commit ' + args.old_commit:20} {peak:5.0f} MB  {result}")


if __name__ == "__main__":
    main()
