"""Issue 20, item 6: an Idempotency-Key stays held for as long as its request works, however long past the
lock's TTL (a probe of a large source on S3 can take minutes).

A real app (TestClient, real Redis) on a media root whose filesystem answers each ``info`` (the source
check of a submission) only after :attr:`SlowMemoryFS.delay` seconds: the lock's TTL is set far below that,
and a retry with the same key while the first request works must get the documented "still being
processed" 409, never a second job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import httpx
import pytest
import redis as redis_sync
from fsspec.implementations.memory import MemoryFileSystem
from litestar.testing import TestClient

from scheduler.records.idempotency import IdempotencyStore, Reservation
from scheduler.settings import Settings
from server.app import create_app


class SlowMemoryFS(MemoryFileSystem):  # type: ignore[misc]
    """fsspec's in-memory filesystem whose next ``slow_calls`` calls of ``info`` (a HEAD on S3) take
    ``delay`` seconds each."""

    protocol = "slowprobe"
    delay = 0.0
    slow_calls = 0
    _lock = threading.Lock()

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        with SlowMemoryFS._lock:
            slow = SlowMemoryFS.slow_calls > 0
            SlowMemoryFS.slow_calls -= slow
        if slow:
            time.sleep(self.delay)
        return super().info(path, **kwargs)  # type: ignore[no-any-return]


fsspec.register_implementation("slowprobe", SlowMemoryFS, clobber=True)

LOCK_MS = 300
WORK_SECONDS = 2.0
BUSY = "A request with this Idempotency-Key is still being processed; retry it later"


@pytest.fixture()
def slow_client(settings: Settings) -> Iterator[TestClient[Any]]:
    root = f"slowprobe://media-{uuid.uuid4().hex}"
    fs = SlowMemoryFS()
    fs.pipe(f"{root}/in/clip.mp4", b"not really a video: only its existence is checked at submission")
    app_settings = settings.model_copy(update={"media_root": root, "run_dispatcher": False})
    with TestClient(app=create_app(app_settings), timeout=30) as client:
        store: IdempotencyStore = client.app.state.runtime.idempotency
        store.lock_ms = LOCK_MS  # far below the work's length: only extending it keeps it
        store.wait_seconds = 0.2  # a duplicate gives up (409) quickly rather than waiting out the first
        yield client
    SlowMemoryFS.slow_calls = 0


def _post(client: TestClient[Any], key: str) -> httpx.Response:
    return client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_uri": "in/clip.mp4"},
                       headers={"Idempotency-Key": key})


def test_a_request_longer_than_the_lock_ttl_keeps_its_key(slow_client: TestClient[Any], redis_url: str) -> None:
    SlowMemoryFS.delay, SlowMemoryFS.slow_calls = WORK_SECONDS, 1  # the first request's source check
    first: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: first.setdefault("answer", _post(slow_client, "slow-key")))
    started = time.monotonic()
    worker.start()
    with redis_sync.Redis.from_url(redis_url) as r:
        deadline = time.monotonic() + 10
        while not list(r.scan_iter("ave:idem:*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(r.scan_iter("ave:idem:*")), "the first request never took the key"

        # Several lock TTLs into the first request's work: the key is still held (extended), so each retry
        # with it answers 409 and submits nothing.
        retries = []
        for at in (3 * LOCK_MS / 1000, 5 * LOCK_MS / 1000):
            time.sleep(max(0.0, started + at - time.monotonic()))
            retries.append(_post(slow_client, "slow-key"))
            assert time.monotonic() - started < WORK_SECONDS, "the retry came after the first request's work"
        for retry in retries:
            assert retry.status_code == 409, retry.text
            assert retry.json() == {"detail": BUSY}
        held = [k for k in r.scan_iter("ave:idem:*")]
        assert len(held) == 1 and r.get(held[0]).startswith(b"P "), "the first request still holds the key"

    worker.join(30)
    answer = first["answer"]
    assert answer.status_code == 202, answer.text
    assert "idempotent-replayed" not in answer.headers

    # Done: the key now answers the first request's record, and there is exactly one job.
    replay = _post(slow_client, "slow-key")
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == answer.json()["id"]
    jobs = slow_client.get("/jobs/?job_type=ingest").json()
    assert [job["id"] for job in jobs] == [answer.json()["id"]]


def test_the_lock_is_extended_only_while_it_is_still_this_requests(slow_client: TestClient[Any],
                                                                   redis_url: str) -> None:
    """A request whose key was taken over (expired while Redis was away, then taken) must not extend the
    new holder's lock: the extension compares the value before it extends."""
    store: IdempotencyStore = slow_client.app.state.runtime.idempotency
    portal = slow_client.blocking_portal
    assert portal is not None
    mine = portal.call(store.begin, "-", "jobs", "takeover", "fp")
    assert isinstance(mine, Reservation)
    assert portal.call(store.refresh, mine) is True
    with redis_sync.Redis.from_url(redis_url) as r:
        r.set(mine.key, "P someone-else fp", px=5_000)
        assert portal.call(store.refresh, mine) is False
        assert r.pttl(mine.key) > 4_000, "another request's lock keeps its own TTL"
        assert r.get(mine.key) == b"P someone-else fp"
