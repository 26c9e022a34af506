"""Search rate limits: per role and per user, 429 with Retry-After, counted from the audit log."""

from __future__ import annotations

from fastapi.testclient import TestClient

from facetrail.governance.accounts import create_user
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import RateLimited, Searcher
from facetrail.web import create_app

from .support import SEARCH_FORM, investigator, open_case


def test_a_user_over_the_limit_is_refused_until_the_window_moves(dev_index, dev_images, engine):
    settings = dev_index.settings.model_copy(
        update={"user_search_limits": {"limited": {"hour": 2, "day": 10}}}
    )
    searcher = Searcher(settings, dev_index.db, open_index(settings, dev_index.db), engine)
    photo = [d for d in dev_images if d.identity == "madonna"][0].path.read_bytes()
    actor = Actor("limited", "investigator", "test")
    with dev_index.db.session() as session, session.begin():
        create_user(session, None, "limited", "investigator")
    open_case(dev_index.db, "T-1", members=["limited"])
    for _ in range(2):
        searcher.search(photo, actor=actor, purpose="source-verification", justification="j", case_ref="T-1")
    try:
        searcher.search(photo, actor=actor, purpose="source-verification", justification="j", case_ref="T-1")
    except RateLimited as exc:
        assert "2 per hour" in str(exc) and 3500 < exc.retry_after <= 3600
    else:
        raise AssertionError("the third search in an hour was allowed")
    # others are not affected
    searcher.search(photo, actor=investigator(), purpose="source-verification", justification="j", case_ref="T-1")


def test_the_api_answers_429_with_retry_after(dev_index, dev_images):
    settings = dev_index.settings.model_copy(update={"search_limits": {"investigator": {"hour": 1}}})
    photo = {"image": ("p.jpg", [d for d in dev_images if d.identity == "madonna"][1].path.read_bytes())}
    headers = {"Authorization": f"Bearer {dev_index.tokens['iris']}"}
    with TestClient(create_app(settings), headers=headers) as client:
        statuses = [client.post("/api/v1/search", data=SEARCH_FORM, files=photo) for _ in range(2)]
    # iris may already have searched in this test run: at most one more search is allowed
    assert statuses[-1].status_code == 429
    assert statuses[-1].json()["code"] == "rate_limited" and int(statuses[-1].headers["retry-after"]) > 0
