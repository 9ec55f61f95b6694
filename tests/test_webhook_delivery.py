"""Webhook attempts, piece by piece (issue 20): the connection goes to the address the guard checked (no second
lookup: DNS rebinding), one deadline bounds a whole attempt, and an attempt records only while it holds its claim.

Traffic stays on loopback: a non-loopback address is only ever handed to a stub backend, which records it and
refuses, so no socket is opened to it. Redis is the session's real redis-server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx
import pytest
from redis import asyncio as aioredis

from scheduler.notify import webhook_guard
from scheduler.notify.webhooks import WebhookDeliverer, WebhookStore
from scheduler.records.jobs import JobStore
from scheduler.records.keys import WEBHOOKS_DUE as WEBHOOKS_DUE_KEY
from scheduler.settings import Settings

PUBLIC = "93.184.216.34"  # only ever given to a stub backend: never connected to
METADATA = "169.254.169.254"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]


# -- helpers -------------------------------------------------------------------------------
def _settings(redis_url: str, **update: Any) -> Settings:
    base: dict[str, Any] = {"webhook_secret": "s", "webhook_allow_private": False, "webhook_max_attempts": 1,
                            "webhook_timeout_seconds": 2.0, "webhook_retry_base_seconds": 0.05,
                            "webhook_retry_factor": 1.0}
    return Settings(redis_url=redis_url, **{**base, **update})


@asynccontextmanager
async def _stores(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, WebhookStore]]:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield redis, WebhookStore(redis, JobStore(redis))
    finally:
        await redis.aclose()


async def _enqueue(webhooks: WebhookStore, url: str) -> str:
    """A job with ``url`` as its callback, cancelled: its delivery ``<job>.1`` is due now."""
    job = await webhooks.store.create("sleepy", {}, callback_url=url)
    assert await webhooks.store.claim("d1") == job["id"]
    await webhooks.store.cancel(job["id"], message="cancelled by the test")
    return f"{job['id']}.1"


async def _settled(webhooks: WebhookStore, delivery_id: str, timeout: float) -> dict[str, str]:
    """The delivery once it is no longer pending (delivered or failed)."""
    deadline = time.monotonic() + timeout
    while (delivery := await webhooks.delivery(delivery_id)).get("state") == "pending":
        assert time.monotonic() < deadline, f"delivery still pending after {timeout}s: {delivery}"
        await asyncio.sleep(0.02)
    return delivery


@asynccontextmanager
async def _deliverers(webhooks: WebhookStore, settings: Settings, count: int = 1) -> AsyncIterator[None]:
    running = [WebhookDeliverer(webhooks, settings, poll_seconds=0.02, worker=f"w{n}") for n in range(count)]
    for deliverer in running:
        await deliverer.start()
    try:
        yield
    finally:
        for deliverer in running:
            await deliverer.stop()


@asynccontextmanager
async def _loopback_server(handler: Handler) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A raw HTTP/1.1 server on 127.0.0.1: each request's head and body is appended to the list it yields."""
    seen: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = {"line": head[0], "headers": headers, "body": body, "at": time.monotonic()}
        seen.append(request)
        try:
            await handler(reader, writer, request)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: the client would have resolved it again


def _answer(status: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n".encode()


# -- the pinned backend, as a function -------------------------------------------------------
class _StubBackend(httpcore.AsyncNetworkBackend):
    """Records where it is asked to connect; refuses the addresses in ``refuse``; opens no socket."""

    def __init__(self, refuse: set[str], stream: httpcore.AsyncNetworkStream | None = None) -> None:
        self.asked: list[tuple[str, int]] = []
        self.refuse = refuse
        self.stream = stream if stream is not None else httpcore.AsyncMockStream([])

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError(f"stub: {host} refused")
        return self.stream


def test_pinned_backend_connects_only_to_the_vetted_addresses_in_order() -> None:
    async def scenario() -> None:
        stub = _StubBackend(refuse={"2001:4860:4860::8888"})
        backend = webhook_guard.PinnedBackend(
            [ipaddress.ip_address("2001:4860:4860::8888"), ipaddress.ip_address(PUBLIC)], stub)
        # The name httpcore passes is never resolved: the first vetted address, then the next when it refuses.
        await backend.connect_tcp("rebind.example", 443, timeout=1)
        assert stub.asked == [("2001:4860:4860::8888", 443), (PUBLIC, 443)]
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_unix_socket("/var/run/docker.sock")
        with pytest.raises(httpcore.ConnectError):
            await webhook_guard.PinnedBackend([ipaddress.ip_address("2001:4860:4860::8888")], stub).connect_tcp(
                "rebind.example", 80)

    asyncio.run(scenario())


class _TLSRecordingStream(httpcore.AsyncMockStream):
    """A connected stream that notes the name TLS would verify, then fails the handshake (no traffic)."""

    def __init__(self, names: list[str | None]) -> None:
        super().__init__([])
        self.names = names

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        self.names.append(server_hostname)
        raise httpcore.ConnectError("stub: no handshake")


def test_pinned_transport_keeps_the_name_for_tls_and_refuses_another_host() -> None:
    async def scenario() -> None:
        names: list[str | None] = []
        stub = _StubBackend(refuse=set(), stream=_TLSRecordingStream(names))
        target = webhook_guard.VettedTarget(url="https://rebind.example/hook", host="rebind.example", port=443,
                                            addresses=(ipaddress.ip_address(PUBLIC),))
        context = httpx.create_ssl_context()
        async with httpx.AsyncClient(transport=webhook_guard.PinnedTransport(target, ssl_context=context,
                                                                             backend=stub)) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(target.url, content=b"{}")
            # TCP to the checked address; SNI and the certificate check on the name.
            assert stub.asked == [(PUBLIC, 443)] and names == ["rebind.example"]
            with pytest.raises(webhook_guard.CallbackURLError, match="not the vetted"):
                await client.post("https://other.example/hook", content=b"{}")
            assert stub.asked == [(PUBLIC, 443)]

    asyncio.run(scenario())


# -- DNS rebinding, through the deliverer ------------------------------------------------------
def test_attempt_connects_to_the_address_it_checked_not_a_second_lookup(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name answers a public address, then the metadata address. Each attempt resolves it once: the first
    connects (to a stub) to the public address it checked, the second is refused by the guard."""
    answers = [PUBLIC, METADATA, METADATA, METADATA]
    lookups: list[str] = []
    connects: list[str] = []

    async def rebinding_resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        lookups.append(host)
        return [ipaddress.ip_address(answers[len(lookups) - 1])]

    async def stub_connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connects.append(host)  # records, and opens no socket, whatever the address
        raise httpcore.ConnectError("stub: no connection")

    monkeypatch.setattr(webhook_guard, "resolve", rebinding_resolve)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", stub_connect)

    async def scenario() -> None:
        async with _stores(redis_url) as (_, webhooks):
            delivery_id = await _enqueue(webhooks, "https://rebind.example/hook")
            async with _deliverers(webhooks, _settings(redis_url, webhook_max_attempts=2)):
                delivery = await _settled(webhooks, delivery_id, timeout=10)
            listing = await webhooks.listing(delivery_id.rsplit(".", 1)[0])
        assert connects == [PUBLIC], f"connected to {connects}, not to the checked address {PUBLIC}"
        assert lookups == ["rebind.example", "rebind.example"]  # one lookup per attempt
        assert delivery["state"] == "failed" and delivery["attempts"] == "2"
        errors = [a["error"] for a in listing["attempts"]]
        assert errors[0].startswith("ConnectError") and errors[1].startswith("refused:") and METADATA in errors[1]

    asyncio.run(scenario())


# -- a real delivery over loopback ---------------------------------------------------------------
def test_loopback_delivery_still_works_and_connects_to_the_resolved_address(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With WEBHOOK_ALLOW_PRIVATE, http://localhost:<port>/ gets the signed POST, over a connection made to an
    address the deliverer resolved (not to the name); a 302 is an answer, never followed."""
    connects: list[str] = []
    real_connect = httpcore.AnyIOBackend.connect_tcp

    async def recording_connect(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connects.append(host)
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise httpcore.ConnectError(f"test: {host} is not loopback")
        return await real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", recording_connect)
    answers = [_answer("302 Found", "location: /elsewhere\r\n"), _answer("204 No Content")]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
        writer.write(answers.pop(0))
        await writer.drain()

    async def scenario() -> None:
        async with _loopback_server(answer) as (port, seen), _stores(redis_url) as (_, webhooks):
            delivery_id = await _enqueue(webhooks, f"http://localhost:{port}/hook")
            settings = _settings(redis_url, webhook_allow_private=True, webhook_max_attempts=3)
            async with _deliverers(webhooks, settings):
                delivery = await _settled(webhooks, delivery_id, timeout=15)
        assert delivery["state"] == "delivered" and delivery["attempts"] == "2", delivery
        assert [r["line"] for r in seen] == ["POST /hook HTTP/1.1"] * 2  # /elsewhere never asked for
        for request in seen:
            assert request["headers"]["host"] == f"localhost:{port}"  # the name, though the socket went to an IP
            assert webhook_guard.verify("s", request["headers"]["webhook-signature"], request["body"])
        assert connects and all(_loopback_ip(h) for h in connects), f"connected by name: {connects}"
        assert connects[-1] == "127.0.0.1"

    asyncio.run(scenario())


# -- one deadline per attempt ----------------------------------------------------------------
def test_a_trickling_server_cannot_keep_an_attempt_past_its_deadline(redis_url: str) -> None:
    """The server sends one byte a second (each read within httpx's per-read timeout) for ten seconds. The
    attempt ends at its 2 s deadline, well inside its claim, so a second deliverer never posts it in parallel."""
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
        for byte in b"HTTP/1.1 2":
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    return  # the client hung up
            except TimeoutError:
                pass

    async def scenario() -> None:
        async with _loopback_server(trickle) as (port, seen), _stores(redis_url) as (_, webhooks):
            delivery_id = await _enqueue(webhooks, f"http://127.0.0.1:{port}/hook")
            settings = _settings(redis_url, webhook_allow_private=True, webhook_timeout_seconds=2.0)
            started = time.monotonic()
            async with _deliverers(webhooks, settings, count=2):
                delivery = await _settled(webhooks, delivery_id, timeout=30)
                took = time.monotonic() - started
            listing = await webhooks.listing(delivery_id.rsplit(".", 1)[0])
        assert took < 4.0, f"the attempt took {took:.1f}s, past its 2 s deadline"
        assert delivery["state"] == "failed" and "timed out" in delivery["last_error"], delivery
        assert len(seen) == 1, f"{len(seen)} requests: the delivery was posted again while its attempt ran"
        assert [a["attempt"] for a in listing["attempts"]] == [1]
        assert listing["attempts"][0]["duration_ms"] < 2600

    asyncio.run(scenario())


# -- records only under the claim --------------------------------------------------------------
def _attempt(delivery_id: str, n: int) -> dict[str, Any]:
    return {"delivery_id": delivery_id, "event": "job.cancelled", "attempt": n, "at": "2024-01-01T00:00:00+00:00",
            "status_code": 500, "error": "HTTP 500", "duration_ms": 1.0, "next_attempt_at": None, "worker": "late"}


def test_a_record_after_the_claim_was_taken_writes_nothing(redis_url: str) -> None:
    async def scenario() -> None:
        async with _stores(redis_url) as (redis, webhooks):
            delivery_id = await _enqueue(webhooks, "http://127.0.0.1:9/hook")
            job_id = delivery_id.rsplit(".", 1)[0]
            first = await webhooks.claim(10, lease=0)  # a lease already over: the next claimer takes it
            second = await webhooks.claim(10, lease=60)
            assert first.ids == second.ids == [delivery_id] and first.token != second.token
            before = await webhooks.delivery(delivery_id)
            score = await redis.zscore(WEBHOOKS_DUE_KEY, delivery_id)
            late = await webhooks.record(before, _attempt(delivery_id, 1), token=first.token, state="failed",
                                         next_epoch=None, body='{"late": true}')
            assert late is False
            assert await webhooks.delivery(delivery_id) == before  # attempt count, state, body: untouched
            assert await redis.zscore(WEBHOOKS_DUE_KEY, delivery_id) == score  # still due for the holder
            assert await redis.lrange(webhooks.attempts_key(job_id), 0, -1) == []
            assert await webhooks.release(delivery_id, first.token) is False  # nor can it hand the claim on
            assert await redis.zscore(WEBHOOKS_DUE_KEY, delivery_id) == score
            # The holder records; its claim ends with it, so the same token cannot record twice.
            held = await webhooks.record(before, _attempt(delivery_id, 1), token=second.token, state="pending",
                                         next_epoch=time.time() + 30, body=None)
            assert held is True
            after = await webhooks.delivery(delivery_id)
            assert after["attempts"] == "1" and after["state"] == "pending" and "claim" not in after
            assert await webhooks.record(after, _attempt(delivery_id, 2), token=second.token, state="failed",
                                         next_epoch=None, body=None) is False
            assert len(await redis.lrange(webhooks.attempts_key(job_id), 0, -1)) == 1

    asyncio.run(scenario())
