"""Issue 20, item 11: ``DELETE /jobs/{id}`` on a failing storage answers 503 (not 500), and an SSE
subscription whose stream never starts is not left registered.

A real app (TestClient: its lifespan, real Redis, the live-updates hub), its media root on an in-memory
fsspec filesystem that can be made to fail (a real server cannot produce a storage error on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from litestar.testing import TestClient

from scheduler.notify.events import JobEvents
from scheduler.settings import Settings
from server.app import create_app


class FlakyMemoryFS(MemoryFileSystem):  # type: ignore[misc]
    """fsspec's in-memory filesystem; while ``failing``, every lookup and removal raises an OSError (EIO),
    as an unreachable network store does."""

    protocol = "flakystore"
    failing = False
    _guard = threading.Lock()

    def _check(self) -> None:
        if FlakyMemoryFS.failing:
            raise OSError(5, "Input/output error")

    def exists(self, path: str, **kwargs: Any) -> bool:
        self._check()
        return bool(super().exists(path, **kwargs))

    def find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().find(path, *args, **kwargs)

    def rm(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._check()
        super().rm(path, *args, **kwargs)


fsspec.register_implementation("flakystore", FlakyMemoryFS, clobber=True)


@pytest.fixture()
def app_client(settings: Settings) -> Iterator[tuple[TestClient[Any], str]]:
    root = f"flakystore://media-{uuid.uuid4().hex}"
    app_settings = settings.model_copy(update={"media_root": root, "run_dispatcher": False})
    FlakyMemoryFS.failing = False
    try:
        with TestClient(app=create_app(app_settings), timeout=30) as client:
            yield client, root
    finally:
        FlakyMemoryFS.failing = False


def _queued_job(client: TestClient[Any]) -> str:
    response = client.post("/jobs/?job_type=sleepy", json={"seconds": 30, "tag": "cleanup"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


# -- 11a -------------------------------------------------------------------------------------------


def test_delete_answers_503_when_the_storage_fails_and_can_be_sent_again(
        app_client: tuple[TestClient[Any], str]) -> None:
    client, root = app_client
    job_id = _queued_job(client)
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    fs = FlakyMemoryFS()
    scratch = f"{root}/jobs/{job_id}/chunk_0001.mp4"
    fs.pipe(scratch, b"an intermediate file")

    FlakyMemoryFS.failing = True
    for path in (f"/jobs/{job_id}", f"/v1/jobs/{job_id}"):
        response = client.delete(path)
        assert response.status_code == 503, response.text
        detail = response.json()
        assert set(detail) == {"detail"}
        assert detail["detail"].startswith("Media storage unreachable: "), detail
        assert "Input/output error" in detail["detail"]
    FlakyMemoryFS.failing = False
    # Nothing went: the record stays, so the same DELETE can be sent again once the storage is back.
    assert client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    assert fs.exists(scratch)

    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert not fs.exists(scratch)


# -- 11b -------------------------------------------------------------------------------------------


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
    }


async def _gone_before_the_first_byte(app: Any, path: str) -> list[dict[str, Any]]:
    """The request as a server sees a client that left right after sending it: every ``receive`` answers
    ``http.disconnect`` at once, and what is sent goes nowhere."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path), receive, send)
    return sent


async def _headers_fail(app: Any, path: str) -> list[dict[str, Any]]:
    """The connection breaks as the response starts: sending its headers raises."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        raise OSError(104, "Connection reset by peer")

    with contextlib.suppress(Exception):
        await app(_scope(path), receive, send)
    return sent


async def _settled(hub: JobEvents, before: int) -> int:
    """The hub's subscription count once what a finished request left behind has had its chance to go
    (a dropped generator's finaliser, the hub's own unsubscribe)."""
    for _ in range(20):
        gc.collect()
        await asyncio.sleep(0.02)
        if hub.clients == before:
            break
    return hub.clients


def test_an_sse_stream_that_never_starts_leaves_no_subscription(app_client: tuple[TestClient[Any], str]) -> None:
    client, _ = app_client
    job_id = _queued_job(client)
    hub: JobEvents = client.app.state.runtime.events
    portal = client.blocking_portal
    assert portal is not None
    before = hub.clients
    # The connection breaks as the response starts (sending its headers raises): the stream never starts.
    # Then a client that left right after its request (this one did not leak before the fix either: the
    # stream's task runs its first step before the disconnect cancels it, but it must stay so).
    for request, how in ((_headers_fail, "error sending the headers"),
                         (_gone_before_the_first_byte, "client gone before the first byte")):
        for path in (f"/jobs/{job_id}/events", f"/v1/jobs/{job_id}/events"):
            sent = portal.call(request, client.app, path)
            assert sent and sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200, sent
            assert portal.call(_settled, hub, before) == before, f"{how}: a subscription is still registered"
    assert job_id not in hub.followed, "the job is no longer followed"

    # A stream that runs still sends the record, and lets go when it ends (after the terminal one: the
    # TestClient reads a response only once the app is done with it).
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    response = client.get(f"/jobs/{job_id}/events")
    assert response.status_code == 200
    assert response.text.startswith("retry: 2000\n\nid: ") and '"status":"cancelled"' in response.text
    assert portal.call(_settled, hub, before) == before
