"""Memory benchmark: peak RSS of `facetrail index` over a large generated folder.

    .venv/bin/python bench/memory.py [--count 20000] [--keep] [--workers N] [--folder DIR]

Requirement: ingesting a folder of 20,000 images keeps the peak RSS of the main process under
1.5 GB, and the work streams (memory does not grow with the number of files beyond the list
of file entries the CLI builds).

1. Generates COUNT images into a temporary folder (1000 per subfolder), in parallel: sizes
   320-1600 px per side, about 70 % JPEG / 30 % PNG, smooth random backgrounds with shapes
   and a little noise. About one in ten (--faces) has a photo from the dev set
   (../shared/data/faces/dev, read by path, never copied) pasted into it, scaled and
   sometimes mirrored. Every file's bytes are distinct (random content), so nothing is
   skipped as a duplicate.
2. Runs `python -m facetrail --data-dir TMP index FOLDER --legal-basis "memory benchmark"`
   as a subprocess and samples /proc every 0.2 s: RSS (and PSS, which counts pages shared
   between the forkserver-started workers once) of the main process and of each descendant
   (the forkserver, the analysis workers, the resource tracker). The main process's peak is
   also read from the kernel's high-water mark (VmHWM), which catches peaks between samples.
3. Prints images, wall time, images/s, the peaks, `getrusage(RUSAGE_CHILDREN).ru_maxrss`
   and the index process's own `wait4` rusage (the largest single process the kernel saw;
   neither covers the analysis workers, which the forkserver reaps after the main process
   has exited), the main process's RSS against files done every ~10 s, and PASS/FAIL of the
   main process against 1.5 GB.

Run time on the 2-core VM, shared with other test runs: generation 507 s (39 images/s),
ingest 2808 s (7.1 images/s; ~11 images/s on a quiet machine), about 55 minutes for the
default 20,000. Result: main process 176 MB peak, flat from the first thousand files on;
each analysis worker ~314 MB; the whole tree ~910 MB. `--count 2000` takes ~5 minutes.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
LIMIT = 1.5 * 1024**3  # bytes: the requirement, for the main process
PER_FOLDER = 1000
INTERVAL = 0.2
PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------------- generation

_faces: list[Image.Image] = []


def _load_faces(dev: Path) -> list[Path]:
    """Labelled face photos of the dev set (not the distractors), at least 100 px."""
    found = []
    for path in sorted(dev.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png") or path.parent.name == "distractors":
            continue
        with Image.open(path) as picture:
            if min(picture.size) >= 100:
                found.append(path)
    return found


def _init(face_paths: list[Path]) -> None:
    global _faces
    _faces = [Image.open(p).convert("RGB") for p in face_paths]


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour blobs (a small random image enlarged), a few shapes, light noise."""
    small = rng.integers(0, 256, (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(2, 8))):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(rng.integers(0, 256, 3).tolist())
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(picture, dtype=np.int16)
    noise = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)  # one channel: cheap, and keeps PNGs small
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _make(job: tuple[int, int, float, str]) -> tuple[int, int]:
    """Write image number `n` into `folder`; returns (bytes written, 1 if a face was pasted)."""
    n, seed, face_share, folder = job
    rng = np.random.default_rng([seed, n])
    width, height = (int(v) for v in rng.integers(320, 1601, 2))
    picture = _background(rng, width, height)
    face = 0
    if _faces and rng.random() < face_share:
        photo = _faces[int(rng.integers(len(_faces)))]
        side = int(min(width, height) * rng.uniform(0.3, 0.7))
        photo = photo.resize((side, side * photo.height // photo.width), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            photo = ImageOps.mirror(photo)
        picture.paste(photo, (int(rng.integers(0, width - photo.width + 1)),
                              int(rng.integers(0, max(1, height - photo.height + 1)))))
        face = 1
    buffer = io.BytesIO()
    if rng.random() < 0.7:
        picture.save(buffer, "JPEG", quality=int(rng.integers(70, 93)))
        suffix = "jpg"
    else:
        picture.save(buffer, "PNG", compress_level=1)
        suffix = "png"
    path = Path(folder) / f"{n // PER_FOLDER:03d}" / f"{n:06d}.{suffix}"
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue()), face


def generate(folder: Path, count: int, face_share: float, seed: int, dev: Path) -> tuple[int, int, float]:
    """Generate `count` images; returns (bytes, images with a pasted face, seconds)."""
    started = time.perf_counter()
    for sub in range((count + PER_FOLDER - 1) // PER_FOLDER):
        (folder / f"{sub:03d}").mkdir(parents=True, exist_ok=True)
    face_paths = _load_faces(dev) if dev.is_dir() else []
    if not face_paths:
        print(f"warning: no face photos under {dev}; generating images without faces", file=sys.stderr)
    total = faces = 0
    jobs = ((n, seed, face_share, str(folder)) for n in range(count))
    with Pool(os.cpu_count() or 1, _init, (face_paths,)) as pool:
        for done, (size, face) in enumerate(pool.imap_unordered(_make, jobs, chunksize=64), 1):
            total += size
            faces += face
            if done % 2000 == 0:
                print(f"  generated {done}/{count}", file=sys.stderr, flush=True)
    return total, faces, time.perf_counter() - started


# ---------------------------------------------------------------------- measurement


@dataclass
class Proc:
    role: str
    peak_rss: int = 0
    peak_pss: int = 0
    hwm: int = 0  # VmHWM: the kernel's peak RSS of the process


@dataclass
class Sampler:
    """Samples the RSS and PSS of a process and its descendants until stopped."""

    pid: int
    procs: dict[int, Proc] = field(default_factory=dict)
    peak_total_rss: int = 0
    peak_total_pss: int = 0
    peak_workers_rss: int = 0  # the analysis workers together
    samples: int = 0
    database: Path | None = None  # the SQLite file of the run, to count the files done
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)  # (s, files done, main RSS, total)
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: float = field(default_factory=time.perf_counter)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            main, total = self.sample()
            now = time.perf_counter() - self._started
            if now - last >= 10 and main:  # every 10 s: how far the run is, against memory
                self.timeline.append((now, _files_done(self.database), main, total))
                last = now
            self._stop.wait(INTERVAL)

    def sample(self) -> tuple[int, int]:
        """Returns (main RSS, total RSS) now."""
        main = 0
        tree = [self.pid, *descendants(self.pid)]
        total_rss = total_pss = workers = 0
        for pid in tree:
            status = _status(pid)
            if status is None:
                continue
            rss, hwm = status
            pss = _pss(pid)
            proc = self.procs.get(pid)
            if proc is None:
                proc = self.procs[pid] = Proc(_role(pid, self.pid))
            proc.peak_rss = max(proc.peak_rss, rss)
            proc.peak_pss = max(proc.peak_pss, pss)
            proc.hwm = max(proc.hwm, hwm)
            total_rss += rss
            total_pss += pss
            if pid == self.pid:
                main = rss
            if proc.role == "worker":
                workers += rss
        self.peak_total_rss = max(self.peak_total_rss, total_rss)
        self.peak_total_pss = max(self.peak_total_pss, total_pss)
        self.peak_workers_rss = max(self.peak_workers_rss, workers)
        self.samples += 1
        return main, total_rss


def _files_done(database: Path | None) -> int:
    """Files recorded so far (rows of `locations`), read-only; -1 if unknown."""
    if database is None or not database.exists():
        return -1
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute("SELECT count(*) FROM locations").fetchone()[0]
    except sqlite3.Error:
        return -1


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    if "VmRSS" not in values:  # a zombie
        return None
    return int(values["VmRSS"]) * 1024, int(values["VmHWM"]) * 1024


def _pss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _role(pid: int, main: int) -> str:
    """main, forkserver (the main process's child that forks the workers), resource tracker or worker.
    The workers are forked by the forkserver, so they share its command line; their parent tells."""
    if pid == main:
        return "main"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    parent = int(stat[stat.rindex(")") + 2 :].split()[1])
    if "resource_tracker" in command:
        return "resource tracker"
    if "forkserver" in command and parent == main:
        return "forkserver"
    return "worker"


def mb(n: float) -> str:
    return f"{n / 1024**2:,.0f} MB"


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="images to generate (default 20000)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder and the data folder")
    parser.add_argument("--folder", type=Path, help="generate into (or reuse, if it holds images) this folder")
    parser.add_argument("--faces", type=float, default=0.1, help="share of images with a pasted face (0.1)")
    parser.add_argument("--workers", type=int, help="analysis processes (default: facetrail's, one per core)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dev", type=Path, default=DEV, help="face photos to paste (read by path)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facetrail-memory-"))
    folder = args.folder or work / "images"
    data_dir = work / "data"
    try:
        existing = sum(1 for _ in folder.rglob("*.*")) if folder.is_dir() else 0
        if existing >= args.count and args.folder:
            count = existing
            print(f"reusing {count} images in {folder}")
        else:
            print(f"generating {args.count} images into {folder} ...", flush=True)
            size, faces, seconds = generate(folder, args.count, args.faces, args.seed, args.dev)
            count = args.count
            print(f"generated {count} images ({faces} with a pasted face), {size / 1024**2:,.0f} MB, "
                  f"in {seconds:.0f} s ({count / seconds:.0f} images/s)", flush=True)

        command = [sys.executable, "-m", "facetrail", "--data-dir", str(data_dir), "index", str(folder),
                   "--legal-basis", "memory benchmark"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        log = work / "index.log"
        print("running:", " ".join(command), flush=True)
        started = time.perf_counter()
        with log.open("wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
            sampler = Sampler(process.pid, database=data_dir / "facetrail.db")
            thread = sampler.start()
            _, status, usage = os.wait4(process.pid, 0)  # reaped here, with its own rusage
            process.returncode = returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        sampler.stop()
        thread.join()
        own = usage.ru_maxrss * 1024  # kB on Linux
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

        output = log.read_text(errors="replace")
        done = [line for line in output.splitlines() if line.startswith(("Done:", "Interrupted:", "Index:"))]
        print("\n".join(done) or output[-3000:])
        if returncode != 0:
            print(f"facetrail index exited with {returncode}; log:\n{output[-3000:]}")

        main_proc = sampler.procs.get(process.pid, Proc("main"))
        workers = [p for p in sampler.procs.values() if p.role == "worker"]
        others = [p for p in sampler.procs.values() if p.role not in ("main", "worker")]
        print()
        print(f"images                        {count:>10,}")
        print(f"wall time                     {wall:>10.1f} s")
        print(f"images/s                      {count / wall:>10.1f}")
        print(f"peak RSS main process         {mb(max(main_proc.hwm, main_proc.peak_rss)):>10}"
              f"   (VmHWM; sampled {mb(main_proc.peak_rss)}, PSS {mb(main_proc.peak_pss)})")
        for i, w in enumerate(sorted(workers, key=lambda p: -p.hwm), 1):
            print(f"peak RSS worker {i:<13} {mb(max(w.hwm, w.peak_rss)):>10}   (PSS {mb(w.peak_pss)})")
        for p in others:
            print(f"peak RSS {p.role:<20} {mb(max(p.hwm, p.peak_rss)):>10}")
        print(f"peak RSS workers together     {mb(sampler.peak_workers_rss):>10}   ({len(workers)} workers)")
        print(f"peak total RSS (tree)         {mb(sampler.peak_total_rss):>10}   "
              f"(sum of RSS per sample; PSS {mb(sampler.peak_total_pss)}, shared pages once)")
        print(f"ru_maxrss (RUSAGE_CHILDREN)   {mb(children):>10}   (largest process this bench reaped, "
              "generator processes included)")
        print(f"ru_maxrss (wait4 of index)    {mb(own):>10}   (the index process and what it reaped; the "
              "workers are reaped by the forkserver, which outlives it, so they are not in these two)")
        print(f"samples                       {sampler.samples:>10}   (every {INTERVAL} s)")
        if sampler.timeline:
            print("\nmain process RSS as the run goes (every ~10 s; files = rows of `locations`):")
            last = len(sampler.timeline) - 1
            for i in sorted({*range(0, last, max(1, last // 12)), last}):
                seconds, files, main_rss, total_rss = sampler.timeline[i]
                print(f"  {seconds:7.0f} s  {files:>7} files  main {mb(main_rss):>8}  tree {mb(total_rss):>9}")
        peak_main = max(main_proc.hwm, main_proc.peak_rss)
        verdict = "PASS" if peak_main < LIMIT and returncode == 0 else "FAIL"
        print(f"{verdict}: main process peak RSS {mb(peak_main)} {'<' if peak_main < LIMIT else '>='} "
              f"{mb(LIMIT)} (1.5 GB)")
        if args.keep:
            print(f"kept: images in {folder}, data folder {data_dir}, log {log}")
        sys.exit(0 if verdict == "PASS" else 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # generated images (unless --folder), data folder, log

if __name__ == "__main__":
    main()
