"""Opt-out benchmark: leaks, collateral and the radii, on the labelled dev photos.

    .venv/bin/python bench/optout.py [--cache FILE] [--chain 0,1,2]
    .venv/bin/python bench/optout.py --timing DIR [--rounds 6]

Data. The real dev photos (../shared/data/faces/dev, read by path through manifest.csv),
analysed with facetrail's own decoder and face engine (dlib). A labelled photo contributes
its largest face; a distractor photo (`none`, `unknown`) every face it holds, each counted
as a person of its own. `--cache` keeps the descriptors between runs (a .npz file).

What is simulated is what facetrail does (governance/optout.py), with the radii it uses:
  * blocking radius b (the model's match threshold): a query within b of an opt-out
    descriptor gets no results; a face within b of one is never returned;
  * deletion radius d: faces within d of an opt-out descriptor are deleted, and, with
    chaining depth c, faces within d of a deleted face too (c rounds);
  * re-ingest: faces within b are not stored again (deleted faces beyond b come back).

Printed:
  1. the distance distributions: the impostor (different-person) pairs, the fitted lower
     tail of that distribution, and for each radius the false-match rate (observed and
     fitted), the share of same-person pairs inside, and the expected faces of other people
     within it per opt-out descriptor at 1 M and 10 M faces;
  2. leaks: for each person with 4+ photos and each way of choosing 1 or 3 of their photos
     as the opt-out (consecutive photos, every start), every other photo of them searches the
     whole dev gallery (top 1000 within the match threshold); the share of their images
     returned after the opt-out (and after a re-ingest) of those returned before it;
  3. collateral for people never indexed (leave-one-identity-out): the gallery is every
     other face; faces deleted and faces hidden per opt-out with 1 and 3 photos, observed
     on the dev set and extrapolated (fitted false-match rate x photos x N) to 1 M and 10 M;
  4. chaining: how many chaining rounds at the deletion radius reach another person.

`--timing DIR`: the public answer's time. A data folder in DIR (built once with the CLI) indexes
the dev set less HELD_OUT people; a real `facetrail serve` on a loopback port answers
`POST /api/v1/opt-out` with 3 photos, alternately of an indexed person (their faces are
removed) and of a held-out one (nothing to remove), `--rounds` of each, 4 s apart (the removal
runs after the answer), after one warm-up request. Printed: each answer's time as the client
sees it, per group.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from facetrail.config import Settings
from facetrail.faces import load_engine
from facetrail.governance.optout import radii
from facetrail.images.decode import decode

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"
FACETRAIL = [sys.executable, "-m", "facetrail"]
HELD_OUT = ("hugh_laurie", "kate_winslet", "will_smith", "mark_ruffalo", "halle_berry", "keanu_reeves")
INDEXED = ("bill_gates", "madonna", "ben_affleck", "mindy_kaling", "noam_chomsky", "bbt_howard")
RADII = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65)
SCALES = (1_000_000, 10_000_000)


def descriptors(cache: Path | None) -> tuple[list[str], np.ndarray]:
    """(identity per face, N x 128 descriptors) of the dev set."""
    if cache and cache.is_file():
        held = np.load(cache)
        return list(held["who"]), held["vectors"]
    engine = load_engine(Settings())
    who, vectors = [], []
    with (DEV / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for n, row in enumerate(rows):
        faces = engine.faces(decode((DEV / row["path"]).read_bytes()).pixels)
        labelled = row["identity"] not in ("none", "unknown")
        for i, face in enumerate(faces[:1] if labelled else faces):
            who.append(row["identity"] if labelled else f"other-{n}-{i}")
            vectors.append(np.asarray(face.embedding, np.float32))
    vectors = np.stack(vectors)
    if cache:
        np.savez(cache, who=np.array(who), vectors=vectors)
    return who, vectors


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))


def tail_fit(impostor: np.ndarray, share: float = 0.05) -> tuple[float, float]:
    """A normal fitted to the lower tail of the impostor distances (the lowest `share`, by
    regressing distance on the normal quantile of each rank): (mean, sd) of that normal."""
    values = np.sort(impostor)
    n = len(values)
    keep = max(20, int(n * share))
    probs = (np.arange(1, keep + 1) - 0.5) / n
    z = np.array([statistics.NormalDist().inv_cdf(p) for p in probs])
    sd, mean = np.polyfit(z, values[:keep], 1)
    return float(mean), float(sd)


def fitted_rate(radius: float, fit: tuple[float, float]) -> float:
    return statistics.NormalDist(*fit).cdf(radius)


def radius_for(rate: float, fit: tuple[float, float]) -> float:
    return statistics.NormalDist(*fit).inv_cdf(rate)


def chained(start: np.ndarray, matrix: np.ndarray, radius: float, rounds: int, allowed: np.ndarray) -> np.ndarray:
    """Faces (bool over the gallery) within `radius` of the seeds' matches, followed `rounds` times."""
    reached = start.copy()
    frontier = start.copy()
    for _ in range(rounds):
        if not frontier.any():
            break
        near = (matrix[frontier] <= radius).any(axis=0) & allowed & ~reached
        reached |= near
        frontier = near
    return reached


def distributions(who: list[str], full: np.ndarray, fit, block: float) -> None:
    labels = np.array(who)
    upper = np.triu(np.ones_like(full, bool), 1)
    same = (labels[:, None] == labels[None, :]) & upper
    different = (labels[:, None] != labels[None, :]) & upper
    impostor, genuine = full[different], full[same]
    print(f"{len(who)} faces, {len(set(who))} people (distractor faces each their own), "
          f"{len(genuine)} same-person pairs, {len(impostor)} different-person pairs")
    print(f"impostor distances: min {impostor.min():.3f}, 0.1 % {np.quantile(impostor, 0.001):.3f}, "
          f"1 % {np.quantile(impostor, 0.01):.3f}, median {np.median(impostor):.3f}; "
          f"lower-tail normal fit: mean {fit[0]:.3f}, sd {fit[1]:.3f}")
    print()
    print("| radius | different-person pairs within (observed) | false-match rate (fitted) | "
          "same-person pairs within | others' faces within, per descriptor, at 1 M | at 10 M |")
    print("| --- | --- | --- | --- | --- | --- |")
    for radius in sorted(set(RADII) | {block}):
        inside = int((impostor <= radius).sum())
        rate = fitted_rate(radius, fit)
        print(f"| {radius:.2f} | {inside} ({inside / len(impostor):.2e}) | {rate:.1e} | "
              f"{(genuine <= radius).mean():.1%} | {rate * SCALES[0]:.3g} | {rate * SCALES[1]:.3g} |")
    for target in (1e-7, 1e-8):
        print(f"radius with fitted false-match rate {target:.0e}: {radius_for(target, fit):.3f}")
    print()


def leaks(who: list[str], full: np.ndarray, block: float, delete: float, rounds: int) -> dict:
    """Per number of photos k: (before, after, after re-ingest, queries blocked, queries, own faces
    deleted, own faces hidden, own faces) summed over every opt-out of every person with 4+ photos."""
    labels = np.array(who)
    out = {}
    for k in (1, 3):
        sums = np.zeros(8, np.int64)
        for person in sorted(set(who)):
            mine = np.flatnonzero(labels == person)
            if len(mine) < 4:
                continue
            for start in range(len(mine)):
                chosen = mine[(start + np.arange(k)) % len(mine)]
                rest = np.setdiff1d(mine, chosen)
                to_opt = full[chosen]  # k x N: opt-out descriptors to every gallery face
                hidden = (to_opt <= block).any(axis=0)
                seeds = (to_opt <= delete).any(axis=0)
                deleted = chained(seeds, full, delete, rounds, np.ones(len(who), bool))
                own = labels == person
                sums[5:] += [int((deleted & own).sum()), int((hidden & ~deleted & own).sum()), int(own.sum())]
                for q in rest:
                    returned = (full[q] <= block) & own
                    returned[q] = False
                    sums[0] += int(returned.sum())
                    sums[4] += 1
                    if (full[chosen, q] <= block).any():  # the query itself matches the opt-out
                        sums[3] += 1
                        continue
                    sums[1] += int((returned & ~hidden & ~deleted).sum())
                    sums[2] += int((returned & ~hidden).sum())
        out[k] = tuple(int(x) for x in sums)
    return out


def collateral(who: list[str], full: np.ndarray, block: float, delete: float, rounds: int) -> dict:
    """Faces of other people deleted and hidden per opt-out by a person who was never indexed."""
    labels = np.array(who)
    out = {}
    for k in (1, 3):
        deleted, hidden, opt_outs = [], [], 0
        gallery_sizes = []
        for person in sorted(set(l for l in who if not l.startswith("other-"))):
            mine = np.flatnonzero(labels == person)
            if len(mine) < k:
                continue
            others = labels != person
            gallery_sizes.append(int(others.sum()))
            for start in range(len(mine)):
                chosen = mine[(start + np.arange(k)) % len(mine)]
                to_opt = full[chosen]
                seeds = (to_opt <= delete).any(axis=0) & others
                gone = chained(seeds, full, delete, rounds, others)
                deleted.append(int(gone.sum()))
                hidden.append(int(((to_opt <= block).any(axis=0) & others & ~gone).sum()))
                opt_outs += 1
        out[k] = (opt_outs, sum(deleted), sum(hidden), max(deleted), statistics.mean(gallery_sizes))
    return out


def chain_reach(who: list[str], full: np.ndarray, delete: float, max_rounds: int = 6) -> list[tuple[int, int, int]]:
    """(rounds, own faces reached, other people's faces reached) summed over every single-photo seed."""
    labels = np.array(who)
    rows = []
    for rounds in range(max_rounds + 1):
        own = other = 0
        for seed in range(len(who)):
            start = full[seed] <= delete
            start[seed] = False
            reached = chained(start, full, delete, rounds, np.arange(len(who)) != seed)
            own += int((reached & (labels == labels[seed])).sum())
            other += int((reached & (labels != labels[seed])).sum())
        rows.append((rounds, own, other))
    return rows


def cli(data_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACETRAIL_")}
    done = subprocess.run([*FACETRAIL, "--data-dir", str(data_dir), *args], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        sys.exit(f"facetrail {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def dev_rows() -> list[dict]:
    with (DEV / "manifest.csv").open() as handle:
        return list(csv.DictReader(handle))


def timing(folder: Path, rounds: int) -> None:
    """The opt-out answer's time, indexed person against held-out person, on a real server."""
    import httpx

    data_dir, photos = folder / "data", folder / "photos"
    if not data_dir.exists():
        for row in dev_rows():
            if row["identity"] not in HELD_OUT:
                target = photos / row["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(DEV / row["path"], target)
        cli(data_dir, "init", "admin")
        print(cli(data_dir, "index", str(photos), "--legal-basis", "labelled test photographs (benchmark)")
              .strip().splitlines()[-1])
    by_person: dict[str, list[Path]] = {}
    for row in dev_rows():
        by_person.setdefault(row["identity"], []).append(DEV / row["path"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FACETRAIL_")},
           "FACETRAIL_OPT_OUT_PER_HOUR": "100000"}
    server = subprocess.Popen([*FACETRAIL, "--data-dir", str(data_dir), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: dict[str, list[float]] = {"indexed": [], "held out": []}
    bodies = set()
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        unknown = next(DEV / row["path"] for row in dev_rows() if row["identity"] == "unknown")
        httpx.post(f"{url}/api/v1/opt-out", files=[("image", ("w.jpg", unknown.read_bytes()))],  # warm up
                   data={"statement": "yes"}, timeout=120)
        for n in range(rounds):
            for group, person in (("indexed", INDEXED[n % len(INDEXED)]), ("held out", HELD_OUT[n % len(HELD_OUT)])):
                start = (n // len(INDEXED)) * 3
                files = [("image", (p.name, p.read_bytes())) for p in by_person[person][start:start + 3]]
                began = time.perf_counter()
                answer = httpx.post(f"{url}/api/v1/opt-out", files=files, data={"statement": "yes"}, timeout=120)
                times[group].append(time.perf_counter() - began)
                bodies.add((answer.status_code, answer.content))
                time.sleep(4)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"opt-out answers, 3 photos each, {rounds} per group; distinct answers: {len(bodies)}")
    print("| person | n | min ms | median ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    for group, values in times.items():
        print(f"| {group} | {len(values)} | {min(values) * 1000:.0f} | {statistics.median(values) * 1000:.0f} | "
              f"{max(values) * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timing", type=Path, help="measure the public answer's time with a data folder here")
    parser.add_argument("--rounds", type=int, default=6, help="opt-outs per group (--timing)")
    parser.add_argument("--cache", type=Path, help="keep the dev descriptors in this .npz file")
    parser.add_argument("--chain", default="0,1,2", help="chaining depths to measure (comma-separated)")
    args = parser.parse_args()
    if args.timing:
        timing(args.timing, args.rounds)
        return
    settings = Settings()
    radius = radii(settings)
    who, vectors = descriptors(args.cache)
    full = distances(vectors, vectors)
    np.fill_diagonal(full, 0.0)
    labels = np.array(who)
    different = (labels[:, None] != labels[None, :]) & np.triu(np.ones_like(full, bool), 1)
    fit = tail_fit(full[different])
    print(f"radii in use: blocking {radius.block}, deletion {radius.delete} (chaining {radius.chain} rounds)\n")
    distributions(who, full, fit, radius.block)

    print("chaining at the deletion radius from one photo (every labelled face as a seed):")
    print("| rounds | own faces reached | other people's faces reached |")
    print("| --- | --- | --- |")
    for rounds, own, other in chain_reach(who, full, radius.delete):
        print(f"| {rounds} | {own} | {other} |")
    print()

    print("## leaks (people with 4+ photos, every photo of theirs indexed) and what happens to their faces")
    print("| blocking | deletion | chaining | photos | leak now | after re-ingest | queries blocked | "
          "own faces deleted | own faces hidden |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    chains = sorted({int(c) for c in args.chain.split(",")} | {radius.chain})
    settings_tried = [(radius.block, radius.delete, c) for c in chains] + [(radius.block, 0.40, radius.chain),
                                                                         (0.65, radius.delete, radius.chain)]
    for block, delete, rounds in settings_tried:
        for k, (before, after, again, blocked, queries, deleted, hidden, own) in leaks(
                who, full, block, delete, rounds).items():
            print(f"| {block} | {delete} | {rounds} | {k} | {after}/{before} = {after / before:.1%} | "
                  f"{again / before:.1%} | {blocked}/{queries} | {deleted / own:.1%} | {hidden / own:.1%} |")
    print()
    print("## collateral: opt-outs by people never indexed (leave-one-identity-out)")
    print("| blocking | deletion | chaining | photos | opt-outs | gallery | deleted (observed, all) | "
          "hidden per opt-out | expected deleted at 1 M | at 10 M | hidden at 1 M | at 10 M |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for block, delete, rounds in settings_tried:
        for k, (n, deleted, hidden, most, size) in collateral(who, full, block, delete, rounds).items():
            per_delete = k * fitted_rate(delete, fit)  # never indexed: no own face seeds a chain
            per_hidden = hidden / n / size
            print(f"| {block} | {delete} | {rounds} | {k} | {n} | {size:.0f} | {deleted} | {hidden / n:.2f} | "
                  f"{per_delete * SCALES[0]:.2g} | {per_delete * SCALES[1]:.2g} | "
                  f"{per_hidden * SCALES[0]:,.0f} | {per_hidden * SCALES[1]:,.0f} |")
    print()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
