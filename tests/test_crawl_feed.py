"""The feed between a crawl (or any producer) and the ingest pipeline."""

from __future__ import annotations

import time

from facetrail.ingest.feed import IDLE_SECONDS, Feed


def test_a_steady_producer_still_lets_the_pipeline_store_as_it_goes() -> None:
    """A crawl delivering an image every 0.02 s never leaves the queue empty for IDLE_SECONDS; the
    pipeline stores only on a pause (None), so before, nothing was stored until 256 images had come.
    The feed now pauses at least every IDLE_SECONDS."""

    def produce(put) -> int:
        for n in range(60):  # 1.2 s in all
            put(n)
            time.sleep(0.02)
        return 60

    seen: list[object] = []
    for element in Feed(produce):
        seen.append(element)
    items = [element for element in seen if element is not None]
    assert items == list(range(60))
    before_the_end = seen[: seen.index(59)]
    assert before_the_end.count(None) >= int(1.2 / IDLE_SECONDS) // 2
