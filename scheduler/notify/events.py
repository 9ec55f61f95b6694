"""Live job updates: one Redis pub/sub connection per process, fanned out to its WebSocket and SSE clients.

Whoever changes a job (the dispatcher, an API server cancelling it, recovery) does it in a
:class:`~scheduler.records.jobs.JobStore` Lua script that also bumps the job's ``rev`` and publishes
``"<rev> <status>"`` on ``ave:events:<job_id>``. Any API server can therefore serve any job:

- :class:`JobEvents` subscribes to a job's channel while at least one local client follows it;
- on a notification newer than what it has, it reads the record once (one ``GET``'s worth of Redis
  work per change and per server, however many clients follow the job), encodes it once, and
  offers the bytes to every :class:`Subscription`;
- a subscription is a small bounded queue: a client too slow to keep up has its queue collapsed
  into the newest record (every message is the full record, so nothing but intermediate progress
  values is lost), and the terminal record is always the last one queued, so it is never dropped.

Nothing here waits on a client: the reader task only parses notifications and starts reads,
and each client's own task sends its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from scheduler.errors import JobNotFoundError, QueueUnavailableError
from scheduler.records import keys
from scheduler.records.jobs import TERMINAL, JobStore, require_decoding

__all__ = ["JobEvents", "LiveMessage", "Subscription"]

_log = logging.getLogger("scheduler.notify.events")
SUBSCRIBE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One job record as sent: its ``rev`` (the SSE id), the encoded JSON and whether it is terminal."""

    rev: int
    data: bytes
    status: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def text(self) -> str:
        return self.data.decode()


class Subscription:
    """A client's bounded queue of records, newest last."""

    def __init__(self, hub: JobEvents, job_id: str, *, limit: int, after_rev: int = -1) -> None:
        self.hub = hub
        self.job_id = job_id
        self.limit = limit
        #: The highest rev queued (or skipped because the client has it already).
        self.last_rev = after_rev
        #: The newest record this process had when the subscription started (None before it had one).
        self.current: LiveMessage | None = None
        self.coalesced = 0
        self.closed = False
        self._queue: deque[LiveMessage] = deque()
        self._wake = asyncio.Event()

    def offer(self, message: LiveMessage) -> None:
        if self.closed or message.rev <= self.last_rev:
            return
        self.last_rev = message.rev
        if len(self._queue) >= self.limit:
            # Too slow: drop what it has not sent yet; the newest record holds all of it.
            self.coalesced += len(self._queue)
            self._queue.clear()
        self._queue.append(message)
        self._wake.set()

    async def get(self, timeout: float | None = None) -> LiveMessage | None:
        """The next record; None once closed, or when ``timeout`` passes with nothing to send."""
        while not self._queue:
            if self.closed:
                return None
            self._wake.clear()
            try:
                # Only the wait is timed: a record is never taken from the queue and then lost.
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return self._queue.popleft()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake.set()
            self.hub._remove(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Topic:
    job_id: str
    subs: set[Subscription] = field(default_factory=set)
    confirmed: asyncio.Future[None] | None = None
    latest: LiveMessage | None = None
    fetch_task: asyncio.Task[None] | None = None
    dirty: bool = False
    error: BaseException | None = None


class JobEvents:
    """The process's hub of live job updates (start it once; ``subscribe`` per client)."""

    def __init__(self, redis: aioredis.Redis, store: JobStore, *, encode: Callable[[Any], bytes],
                 queue_limit: int = 16) -> None:
        self.redis = require_decoding(redis)
        self.store = store
        self.encode = encode
        self.queue_limit = queue_limit
        self._topics: dict[str, _Topic] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self.notifications = 0
        self.fetches = 0

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="job-events")

    async def close(self) -> None:
        self._stopping = True
        for topic in list(self._topics.values()):
            for sub in list(topic.subs):
                sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._drop_pubsub()

    @property
    def clients(self) -> int:
        """The subscriptions open now (WebSocket and SSE clients of this process)."""
        return sum(len(t.subs) for t in self._topics.values())

    @property
    def followed(self) -> frozenset[str]:
        """The jobs this process follows now (one channel subscription each)."""
        return frozenset(self._topics)

    # -- subscribing --------------------------------------------------------------------
    async def subscribe(self, job_id: str, *, after_rev: int = -1) -> Subscription:
        """Follow a job: the returned subscription already holds its current record (unless the
        client has it: ``after_rev`` ≥ its rev). Raises JobNotFoundError or QueueUnavailableError."""
        topic = self._topics.get(job_id)
        if topic is None:
            topic = self._topics[job_id] = _Topic(job_id)
        sub = Subscription(self, job_id, limit=self.queue_limit, after_rev=after_rev)
        topic.subs.add(sub)
        try:
            await self._confirm(topic)
            if topic.latest is None or topic.fetch_task is not None:
                await self._fetch_now(topic)
            assert topic.latest is not None
            sub.current = topic.latest
            sub.offer(topic.latest)
        except BaseException:
            sub.close()
            raise
        return sub

    def _remove(self, sub: Subscription) -> None:
        topic = self._topics.get(sub.job_id)
        if topic is None:
            return
        topic.subs.discard(sub)
        if not topic.subs and self._topics.get(sub.job_id) is topic:
            del self._topics[sub.job_id]
            if self._pubsub is not None and not self._stopping:
                task = asyncio.ensure_future(self._unsubscribe(self.store.channel(sub.job_id)))
                task.add_done_callback(_quiet)

    async def _unsubscribe(self, channel: str) -> None:
        if channel[len(keys.EVENTS_PREFIX):] in self._topics:
            return  # followed again meanwhile
        with contextlib.suppress(RedisError, OSError, AttributeError):
            await self._pubsub.unsubscribe(channel)

    async def _confirm(self, topic: _Topic) -> None:
        """Make sure the channel is subscribed (its confirmation read) before the first read of the job,
        so no change can fall between the read and the subscription."""
        if topic.confirmed is None or (topic.confirmed.done() and topic.confirmed.exception() is not None):
            loop = asyncio.get_running_loop()
            topic.confirmed = loop.create_future()
            try:
                await asyncio.wait_for(self._connected.wait(), SUBSCRIBE_TIMEOUT)
                await self._pubsub.subscribe(self.store.channel(topic.job_id))
            except (TimeoutError, RedisError, OSError, AttributeError) as exc:
                error = QueueUnavailableError(f"cannot follow job updates: {exc or 'Redis unavailable'}")
                if not topic.confirmed.done():
                    topic.confirmed.set_exception(error)
                    topic.confirmed.exception()  # retrieved: no "never retrieved" warning
                raise error from None
        try:
            await asyncio.wait_for(asyncio.shield(topic.confirmed), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            raise QueueUnavailableError("cannot follow job updates: no subscription confirmation from Redis") from None

    # -- reading records ----------------------------------------------------------------
    def _kick(self, topic: _Topic) -> None:
        if topic.fetch_task is not None:
            topic.dirty = True
            return
        topic.fetch_task = asyncio.create_task(self._fetch_loop(topic))

    async def _fetch_now(self, topic: _Topic) -> None:
        self._kick(topic)
        task = topic.fetch_task
        if task is not None:
            await asyncio.shield(task)
        if topic.latest is None:
            raise topic.error if topic.error is not None else JobNotFoundError(topic.job_id)

    async def _fetch_loop(self, topic: _Topic) -> None:
        try:
            while True:
                topic.dirty = False
                try:
                    record, rev = await self.store.snapshot(topic.job_id)
                    topic.error = None
                except (JobNotFoundError, QueueUnavailableError) as exc:
                    topic.error = exc
                    break
                self.fetches += 1
                if topic.latest is None or rev > topic.latest.rev:
                    message = LiveMessage(rev, self.encode(record), record["status"])
                    topic.latest = message
                    for sub in list(topic.subs):
                        sub.offer(message)
                if not topic.dirty:
                    break
        except Exception:  # noqa: BLE001  (a fetch must never take the hub down)
            _log.exception("reading job %s for its live clients failed", topic.job_id)
        finally:
            topic.fetch_task = None

    # -- the reader ---------------------------------------------------------------------
    async def _drop_pubsub(self) -> None:
        self._connected.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await self._connect()
                backoff = 0.2
                while not self._stopping:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                    if message is not None:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (Redis down: reconnect, then re-read every followed job)
                if not self._stopping:
                    _log.warning("job events: Redis pub/sub lost (%s); reconnecting", exc or type(exc).__name__)
                await self._drop_pubsub()
                for topic in self._topics.values():
                    if topic.confirmed is not None and not topic.confirmed.done():
                        topic.confirmed.set_exception(QueueUnavailableError(str(exc) or "Redis unavailable"))
                        topic.confirmed.exception()
                    topic.confirmed = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> None:
        self._pubsub = self.redis.pubsub()
        channels = [keys.EVENTS_HUB, *(self.store.channel(job_id) for job_id in self._topics)]
        await self._pubsub.subscribe(*channels)
        loop = asyncio.get_running_loop()
        for topic in self._topics.values():
            topic.confirmed = loop.create_future()
        self._connected.set()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if not isinstance(channel, str) or channel == keys.EVENTS_HUB:
            return
        topic = self._topics.get(channel[len(keys.EVENTS_PREFIX):])
        if topic is None:
            return
        if kind == "subscribe":
            if topic.confirmed is not None and not topic.confirmed.done():
                topic.confirmed.set_result(None)
            # Subscribed again after a reconnect: what changed meanwhile was not notified.
            if topic.latest is not None:
                self._kick(topic)
        elif kind == "message":
            self.notifications += 1
            data = message.get("data")
            text = str(data)
            try:
                rev = int(text.split(" ", 1)[0])
            except ValueError:
                rev = -1
            if topic.latest is None or rev < 0 or rev > topic.latest.rev:
                self._kick(topic)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
