"""Wiring: everything the server and the standalone dispatcher share, built from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from redis import asyncio as aioredis

from operators.storage import Storage
from scheduler.records.assets import AssetStore
from scheduler.brand.store import BrandKitStore
from scheduler.records.clip_versions import ClipVersionStore
from scheduler.dispatch.cluster import ClusterHandle
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.notify.events import JobEvents
from scheduler.admission.graphs import GraphCatalog
from scheduler.records.idempotency import IdempotencyStore
from pipelines.limits import PayloadBounds
from scheduler.records.metrics import flush_redis_errors
from scheduler.wiring.redis_server import EmbeddedRedis
from scheduler.admission.service import JobService
from scheduler.settings import Settings
from scheduler.records.jobs import JobStore
from scheduler.notify.webhooks import WebhookDeliverer, WebhookStore

__all__ = ["Runtime", "broker_display"]

_log = logging.getLogger("scheduler.wiring.runtime")


def broker_display(url: str) -> str:
    """``host:port/db`` for diagnostics: never the scheme or a password."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return f"{parsed.path}/0"
    db = (parsed.path or "/0").lstrip("/") or "0"
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}/{db}"


@dataclass
class Runtime:
    """Redis, the stores, the graph catalog, storage, the Dask cluster and the dispatcher."""

    settings: Settings
    catalog: GraphCatalog
    redis_url: str = ""
    redis: aioredis.Redis | None = None
    embedded: EmbeddedRedis | None = None
    cluster: ClusterHandle | None = None
    dispatcher: Dispatcher | None = None
    events: JobEvents | None = None
    deliverer: WebhookDeliverer | None = None
    #: The stores and the service, built once per Redis client (they hold registered Lua scripts).
    _built: dict[str, Any] = field(default_factory=dict, repr=False)
    _metrics_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def prepare(cls, settings: Settings) -> Runtime:
        """Load the graphs (a broken graph stops start-up here) and open Redis."""
        catalog = GraphCatalog.load(settings.graphs_dir)
        runtime = cls(settings=settings, catalog=catalog)
        runtime.storage_root_ready()
        runtime.open_redis()
        return runtime

    def storage_root_ready(self) -> None:
        storage = self.storage
        if storage.is_local:
            storage.local_root.mkdir(parents=True, exist_ok=True)

    def open_redis(self) -> None:
        url = self.settings.redis_url
        if not url:
            self.embedded = EmbeddedRedis(self.settings.data_dir, port=self.settings.embedded_redis_port)
            try:
                url = self.embedded.start()
            except Exception as exc:  # noqa: BLE001  (serve /health/ even without Redis)
                _log.error("embedded Redis did not start: %s", exc)
                url = f"redis://127.0.0.1:{self.settings.embedded_redis_port or 6379}/0"
        self.redis_url = url
        self._built.clear()
        # No socket_timeout (redis-py's default is 5 s): with one, redis-py wraps every command's write in
        # asyncio.wait_for, a new Task per command (a tenth of GET /jobs/{id}'s cost on Python 3.11).
        # store.guard() bounds each call with one asyncio.timeout instead (REDIS_CALL_TIMEOUT).
        # decode_responses: every reply is text (the one binary value, an Idempotency-Key's stored response
        # body, is read with NEVER_DECODE; see scheduler/records/idempotency.py).
        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=None, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=10,
            retry_on_timeout=False, decode_responses=True,
        )

    @property
    def storage(self) -> Storage:
        return Storage(self.settings.media_url, options=self.settings.media_storage_options)

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        value = self._built.get(name)
        if value is None:
            value = self._built[name] = build()
        return value

    @property
    def store(self) -> JobStore:
        assert self.redis is not None
        return self._once("store", lambda: JobStore(  # type: ignore[no-any-return]
            self.redis, log_limit=self.settings.job_log_limit, ttl_seconds=self.settings.job_ttl_seconds))

    @property
    def assets(self) -> AssetStore:
        assert self.redis is not None
        return self._once("assets", lambda: AssetStore(self.redis))  # type: ignore[no-any-return]

    @property
    def clip_versions(self) -> ClipVersionStore:
        assert self.redis is not None
        return self._once("clip_versions", lambda: ClipVersionStore(self.redis))  # type: ignore[no-any-return]

    @property
    def brand_kits(self) -> BrandKitStore:
        assert self.redis is not None
        return self._once("brand_kits", lambda: BrandKitStore(self.redis))  # type: ignore[no-any-return]

    @property
    def webhooks(self) -> WebhookStore:
        assert self.redis is not None
        return self._once("webhooks", lambda: WebhookStore(self.redis, self.store))  # type: ignore[no-any-return]

    @property
    def idempotency(self) -> IdempotencyStore:
        assert self.redis is not None
        return self._once("idempotency", lambda: IdempotencyStore(  # type: ignore[no-any-return]
            self.redis, ttl_seconds=self.settings.idempotency_ttl_seconds))

    @property
    def service(self) -> JobService:
        settings = self.settings
        return self._once("service", lambda: JobService(  # type: ignore[no-any-return]
            store=self.store, assets=self.assets, catalog=self.catalog, storage=self.storage,
            clip_versions=self.clip_versions, brand_kits=self.brand_kits,
            limits={"max_render_seconds": settings.max_render_seconds},
            bounds=PayloadBounds(max_string=settings.max_payload_string, max_items=settings.max_payload_items,
                                 max_depth=settings.max_payload_depth)))

    async def start_metrics(self) -> None:
        """Every few seconds: add this process's Redis error count to Redis (see scheduler/records/metrics.py) and drop
        expired jobs from the listing index (JobStore.sweep: one cheap script, so every process may run it)."""
        if self._metrics_task is None:
            self._metrics_task = asyncio.create_task(self._housekeeping_loop(), name="metrics-flush")

    async def _housekeeping_loop(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.redis is None:
                continue
            await flush_redis_errors(self.redis)
            if self.settings.job_ttl_days:
                try:
                    await self.store.sweep()
                except Exception as exc:  # noqa: BLE001  (Redis away: the next round sweeps)
                    _log.debug("retention sweep skipped: %s", exc)

    async def start_cluster(self) -> None:
        self.cluster = ClusterHandle(self.settings)
        try:
            await self.cluster.start()
        except Exception as exc:  # noqa: BLE001  (report it in diagnostics; jobs wait in the queue)
            self.cluster.error = f"{type(exc).__name__}: {exc}"
            _log.error("Dask cluster unavailable: %s", self.cluster.error)

    async def start_dispatcher(self) -> None:
        if self.cluster is None or self.cluster.client is None:
            return
        self.dispatcher = Dispatcher(self.service, self.cluster.client, self.settings)
        await self.dispatcher.start()

    async def start_events(self, encode: Callable[[Any], bytes] | None = None) -> JobEvents:
        """The hub of live job updates for this process's WebSocket and SSE clients."""
        assert self.redis is not None
        if self.events is None:
            self.events = JobEvents(self.redis, self.store, encode=encode or _encode_json,
                                    queue_limit=self.settings.live_client_queue)
            await self.events.start()
        return self.events

    async def start_webhooks(self) -> None:
        """Deliver due webhooks from this process (any number of processes may)."""
        if self.settings.run_webhooks and self.deliverer is None:
            self.deliverer = WebhookDeliverer(self.webhooks, self.settings)
            await self.deliverer.start()

    async def close(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._metrics_task
            self._metrics_task = None
        if self.deliverer is not None:
            await self.deliverer.stop()
            self.deliverer = None
        if self.events is not None:
            await self.events.close()
            self.events = None
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        if self.cluster is not None:
            await self.cluster.close()
            self.cluster = None
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await flush_redis_errors(self.redis)
            await self.redis.aclose()
            self.redis = None
            self._built.clear()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
