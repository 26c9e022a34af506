"""Heavy uploads never stall the server (issue 12, item 11).

Decoding, face detection and embedding, index search, opt-outs and password checks run in the
web app's bounded CPU pool (web/cpu.py), not on the event loop. The attack: hold the pool with
a real search, then ask for /healthz, pages, result pages and media (they answer while the
search is still running), and send more uploads (503 busy with Retry-After, nothing done).

The server is the real app under uvicorn on loopback. A search is held in the pool by holding
the searcher's face-engine lock: the search decodes its photo in the worker thread and then
waits for the lock, so it cannot finish until the test lets it. "While it runs" is therefore
an ordering fact checked with events and thread states, not a measured time.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from facetrail.errors import Refused
from facetrail.store import AuditEntry
from facetrail.web import create_app
from facetrail.web.cpu import CpuPool

from .support import PASSWORD, SEARCH_FORM, image_bytes, pair_photo, photo_of, upload

# Other modules search the same dev index as the same users: their searches must not rate-limit or
# hold (repeat subject) these.
UNLIMITED = {"search_limits": {"investigator": {"hour": 10_000, "day": 10_000}}, "repeat_subject_count": 10_000}
WAIT = 60.0  # seconds: a request that has not answered by then has stalled (fails instead of hanging)


@contextmanager
def serving(settings, **pool) -> Iterator[tuple[object, httpx.Client]]:
    """The real app under uvicorn on a free loopback port, with the given CPU pool settings;
    yields (app, client)."""
    app = create_app(settings.model_copy(update={**pool, **UNLIMITED}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1200):  # until the lifespan has run (loading the face model takes a while)
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        assert server.started, "the server did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=WAIT) as client:
            yield app, client
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT)
        sock.close()


@contextmanager
def held_search(app, client: httpx.Client, token: str, photo: bytes) -> Iterator[Future]:
    """A real search running in the CPU pool and held there (the face engine's lock is taken
    first); yields the future of its answer. Leaving the block lets it finish."""
    lock = app.state.searcher._engine_lock
    lock.acquire()
    background = ThreadPoolExecutor(1)
    try:
        answer = background.submit(client.post, "/api/v1/search", files=upload(photo), data=SEARCH_FORM,
                                   headers=bearer(token))
        for _ in range(int(WAIT / 0.01)):  # until the search holds its slot in the pool
            if app.state.cpu.taken or answer.done():
                break
            time.sleep(0.01)
        assert app.state.cpu.taken == 1 and not answer.done(), "the search did not reach the pool"
        yield answer
    finally:
        lock.release()
        background.shutdown(wait=True)


def form_token(client: httpx.Client, page: str) -> str:
    """The CSRF token of a public form (its cookie is set by loading the page)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text).group(1)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def searches(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "search"))


def assert_busy(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "busy"
    assert int(answer.headers["Retry-After"]) >= 1


def test_a_held_search_leaves_health_pages_and_results_answering_and_refuses_more_uploads(dev_index, dev_images):
    ivan, iris = dev_index.tokens["ivan"], dev_index.tokens["iris"]
    keanu = photo_of(dev_images, "keanu_reeves", 2).read_bytes()
    with serving(dev_index.settings, cpu_workers=1, cpu_queue=0) as (app, client):
        earlier = client.post("/api/v1/search", files=upload(keanu), data=SEARCH_FORM, headers=bearer(ivan)).json()
        crop = earlier["results"][0]["crop_url"]
        before = searches(dev_index.db)

        with held_search(app, client, ivan, photo_of(dev_images, "bill_gates").read_bytes()) as running:
            # everything that needs no CPU pool answers while the search runs ...
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/login").status_code == 200
            assert client.get("/opt-out").status_code == 200
            page = client.get(f"/api/v1/searches/{earlier['audit_id']}", headers=bearer(ivan))
            assert [r["face_id"] for r in page.json()["results"]] == [r["face_id"] for r in earlier["results"]]
            media = client.get(crop, headers=bearer(ivan))
            assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"
            assert client.get("/api/v1/stats", headers=bearer(iris)).status_code == 200
            # ... and every upload that needs it is refused at once, with when to come back
            assert_busy(client.post("/api/v1/search", files=upload(keanu), data=SEARCH_FORM, headers=bearer(iris)))
            assert_busy(client.post("/api/v1/search", files=upload(keanu), data={**SEARCH_FORM, "mode": "copies"},
                                    headers=bearer(iris)))
            assert_busy(client.post("/api/v1/faces", files=upload(pair_photo(dev_images)), headers=bearer(iris)))
            assert_busy(client.post("/api/v1/opt-out", files=upload(keanu), data={"statement": "yes"}))
            assert not running.done()  # all of the above was answered before the held search finished

        held = running.result()
        assert held.status_code == 200
        assert held.json()["results"][0]["image"]["location"].count("bill_gates")
        assert searches(dev_index.db) == before + 1  # the refused searches were not run or recorded
        again = client.post("/api/v1/search", files=upload(keanu), data=SEARCH_FORM, headers=bearer(iris))
        assert again.status_code == 200  # the pool is free again
        assert [r["face_id"] for r in again.json()["results"]] == [r["face_id"] for r in earlier["results"]]


def test_opt_outs_the_server_was_too_busy_to_take_do_not_count_against_the_person(dev_index, dev_images):
    """A person whose opt-outs met a full pool was turned away by the server, not by the rate
    limit: trying again when it is free is not refused as too many requests."""
    keanu = photo_of(dev_images, "keanu_reeves", 2).read_bytes()
    blank = image_bytes("white", "PNG", (64, 64))  # no face: taken and answered, removes nothing
    with serving(dev_index.settings, cpu_workers=1, cpu_queue=0, opt_out_per_hour=2) as (app, client):
        with held_search(app, client, dev_index.tokens["ivan"], keanu) as running:
            for _ in range(3):
                assert_busy(client.post("/api/v1/opt-out", files=upload(blank), data={"statement": "yes"}))
        assert running.result().status_code == 200
        after = [client.post("/api/v1/opt-out", files=upload(blank), data={"statement": "yes"}) for _ in range(3)]
        assert [a.json().get("code") for a in after][:2] != ["rate_limited"] * 2
        assert [a.status_code == 429 for a in after] == [False, False, True]  # the limit itself still holds


def test_a_busy_pool_refuses_the_opt_out_and_sign_in_forms_with_retry_after(dev_index, dev_images):
    keanu = photo_of(dev_images, "keanu_reeves", 2).read_bytes()
    with serving(dev_index.settings, cpu_workers=1, cpu_queue=0) as (app, client):
        sign_in = {"username": "otto", "password": PASSWORD}
        with held_search(app, client, dev_index.tokens["ivan"], keanu) as running:
            refused = client.post("/login", data={**sign_in, "csrf_token": form_token(client, "/login")},
                                  follow_redirects=False)
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert "busy" in refused.text and "ft_session" not in refused.cookies
            optout = client.post("/opt-out", files=upload(keanu),
                                 data={"statement": "yes", "csrf_token": form_token(client, "/opt-out")})
            assert optout.status_code == 503 and int(optout.headers["Retry-After"]) >= 1
            assert "busy" in optout.text
            assert not running.done()
        assert running.result().status_code == 200

        signed = client.post("/login", data={**sign_in, "csrf_token": form_token(client, "/login")},
                             follow_redirects=False)
        assert signed.status_code == 303 and signed.cookies.get("ft_session")  # the pool is free: signed in


def test_queue_slots_let_uploads_wait_instead_of_being_refused(dev_index, dev_images):
    ivan, iris = dev_index.tokens["ivan"], dev_index.tokens["iris"]
    keanu = photo_of(dev_images, "keanu_reeves", 2).read_bytes()
    with serving(dev_index.settings, cpu_workers=1, cpu_queue=1) as (app, client):
        with ThreadPoolExecutor(1) as waiting, held_search(app, client, ivan, keanu) as running:
            queued = waiting.submit(client.post, "/api/v1/faces", files=upload(keanu), headers=bearer(iris))
            for _ in range(int(WAIT / 0.01)):  # until it waits in the queue
                if app.state.cpu.taken == 2 or queued.done():
                    break
                time.sleep(0.01)
            assert app.state.cpu.taken == 2 and not queued.done()
            assert_busy(client.post("/api/v1/faces", files=upload(keanu), headers=bearer(iris)))  # queue full
            assert client.get("/healthz").status_code == 200
            assert not running.done() and not queued.done()
        assert running.result().status_code == 200
        assert queued.result().status_code == 200 and len(queued.result().json()["faces"]) == 1


def test_concurrent_searches_in_the_pool_give_the_results_of_searches_one_at_a_time(dev_index, dev_images):
    """The pool's threads share one searcher: its face engine, index and opt-out filter must give
    each search its own, right answer."""
    identities = ["keanu_reeves", "bill_gates", "anthony_hopkins", "keanu_reeves", "bill_gates", "anthony_hopkins"]
    photos = [photo_of(dev_images, name, i % 2).read_bytes() for i, name in enumerate(identities)]
    token = dev_index.tokens["ivan"]
    with serving(dev_index.settings, cpu_workers=3, cpu_queue=len(photos)) as (_app, client):
        def search(photo: bytes) -> list:
            answer = client.post("/api/v1/search", files=upload(photo), data=SEARCH_FORM, headers=bearer(token))
            assert answer.status_code == 200, answer.text
            return [(r["face_id"], r["distance"]) for r in answer.json()["results"]]

        one_at_a_time = [search(photo) for photo in photos]
        with ThreadPoolExecutor(len(photos)) as clients:
            at_once = list(clients.map(search, photos))
    assert at_once == one_at_a_time
    assert all(results for results in at_once)


# The pool itself


def test_the_pool_refuses_beyond_its_slots_and_frees_a_slot_when_a_job_ends():
    async def scenario() -> None:
        pool = CpuPool(workers=1, queue=1)
        started, finish = threading.Event(), threading.Event()

        def slow() -> str:
            started.set()
            finish.wait(WAIT)
            return "slow"

        first = asyncio.ensure_future(pool.run(slow))
        second = asyncio.ensure_future(pool.run(lambda: "queued"))
        await asyncio.sleep(0)  # both admitted
        with pytest.raises(Refused) as busy:
            await pool.run(lambda: "refused")
        assert busy.value.code == "busy" and busy.value.retry_after >= 1
        await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)
        finish.set()
        assert await first == "slow" and await second == "queued"
        assert pool.taken == 0
        assert await pool.run(lambda: "again") == "again"
        pool.close()

    asyncio.run(scenario())


def test_a_job_given_up_before_it_starts_does_not_keep_its_slot():
    async def scenario() -> None:
        pool = CpuPool(workers=1, queue=1)
        finish = threading.Event()
        ran = []
        first = asyncio.ensure_future(pool.run(finish.wait, WAIT))
        second = asyncio.ensure_future(pool.run(ran.append, "second"))
        await asyncio.sleep(0)
        second.cancel()  # its client went away while it waited
        with pytest.raises(asyncio.CancelledError):
            await second
        assert pool.taken == 1  # only the running job holds a slot
        finish.set()
        await first
        assert ran == [] and pool.taken == 0
        pool.close()

    asyncio.run(scenario())


def test_a_failing_job_raises_in_its_request_and_frees_its_slot():
    async def scenario() -> None:
        pool = CpuPool(workers=1, queue=0)
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        assert pool.taken == 0 and await pool.run(lambda: 2) == 2
        pool.close()

    asyncio.run(scenario())


def test_the_pool_leaves_a_core_to_the_event_loop_unless_set(tmp_path):
    from facetrail.config import Settings
    from facetrail.web.cpu import cores

    default = CpuPool.from_settings(Settings(data_dir=tmp_path))
    assert (default.workers, default.queue) == (max(1, cores() - 1), 16)
    three = CpuPool.from_settings(Settings(data_dir=tmp_path, cpu_workers=3, cpu_queue=0))
    assert (three.workers, three.queue) == (3, 0)
    default.close()
    three.close()
    with pytest.raises(ValueError):
        CpuPool(workers=0, queue=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_analysis_threads_yield_the_cpu_to_the_rest_of_the_server():
    """A photo's analysis runs at a lower priority than the thread that answers everything else,
    so a busy core serves /healthz, pages and media first (and the caller's priority is untouched)."""
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def scenario() -> tuple[int, int]:
        pool = CpuPool(workers=1, queue=0)
        try:
            return niceness(), await pool.run(niceness)
        finally:
            pool.close()

    mine, worker = asyncio.run(scenario())
    assert worker == min(19, mine + 10) and worker > mine and niceness() == mine


def test_audit_entries_written_at_once_by_pool_threads_all_land_in_one_chain(tmp_path):
    """The pool's threads record searches, sign-ins and opt-outs at the same time: on SQLite too,
    each append must see the chain's head as it is, so none fails and the chain verifies."""
    from facetrail.governance import audit
    from facetrail.governance.actors import Actor
    from facetrail.store import Database

    db = Database(f"sqlite:///{tmp_path / 'facetrail.db'}")
    threads, each = 8, 10
    start = threading.Barrier(threads)

    def append(n: int) -> None:
        start.wait()
        for k in range(each):
            with db.session() as session, session.begin():
                session.scalar(select(func.count()).select_from(AuditEntry))  # a search reads first
                audit.record(session, Actor(f"user{n}", "investigator", "test"), "search", "trust-and-safety", k=k)

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(append, n) for n in range(threads)]:
            done.result()  # no IntegrityError on audit_log.prev_hash
    with db.session() as session:
        checked, problem = audit.verify(session)
        total = session.scalar(select(func.count()).select_from(AuditEntry))
        appended = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "search"))
    assert problem is None and checked == total and appended == threads * each
    db.close()
