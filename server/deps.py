"""The providers of the objects handlers are given: each reads one thing off the app's ``Runtime``.

Each controller (and each plain route handler) registers the ones it uses with ``Provide`` under the
name its handlers' parameters take, so a handler asks for exactly the objects it needs, never the
whole runtime. All of them are plain functions returning attributes, hence ``sync_to_thread=False``.
"""

from __future__ import annotations

from litestar.datastructures import State
from redis import asyncio as aioredis

from operators.storage import Storage
from scheduler.admission.graphs import GraphCatalog
from scheduler.admission.service import JobService
from scheduler.dispatch.cluster import ClusterHandle
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.notify.events import JobEvents
from scheduler.notify.webhooks import WebhookStore
from scheduler.brand.store import BrandKitStore
from scheduler.records.assets import AssetStore
from scheduler.records.clip_versions import ClipVersionStore
from scheduler.records.idempotency import IdempotencyStore
from scheduler.records.jobs import JobStore
from scheduler.settings import Settings

__all__ = [
    "provide_assets",
    "provide_brand_kits",
    "provide_catalog",
    "provide_clip_versions",
    "provide_cluster",
    "provide_dispatcher",
    "provide_events",
    "provide_idempotency",
    "provide_redis",
    "provide_redis_url",
    "provide_service",
    "provide_settings",
    "provide_storage",
    "provide_store",
    "provide_webhooks",
]


def provide_settings(state: State) -> Settings:
    return state.runtime.settings  # type: ignore[no-any-return]


def provide_catalog(state: State) -> GraphCatalog:
    return state.runtime.catalog  # type: ignore[no-any-return]


def provide_store(state: State) -> JobStore:
    return state.runtime.store  # type: ignore[no-any-return]


def provide_service(state: State) -> JobService:
    return state.runtime.service  # type: ignore[no-any-return]


def provide_assets(state: State) -> AssetStore:
    return state.runtime.assets  # type: ignore[no-any-return]


def provide_brand_kits(state: State) -> BrandKitStore:
    return state.runtime.brand_kits  # type: ignore[no-any-return]


def provide_clip_versions(state: State) -> ClipVersionStore:
    return state.runtime.clip_versions  # type: ignore[no-any-return]


def provide_idempotency(state: State) -> IdempotencyStore:
    return state.runtime.idempotency  # type: ignore[no-any-return]


def provide_webhooks(state: State) -> WebhookStore:
    return state.runtime.webhooks  # type: ignore[no-any-return]


def provide_storage(state: State) -> Storage:
    return state.runtime.storage  # type: ignore[no-any-return]


def provide_events(state: State) -> JobEvents | None:
    """The live-updates hub; ``None`` while it is not running (the handlers answer that themselves)."""
    return state.runtime.events  # type: ignore[no-any-return]


def provide_redis(state: State) -> aioredis.Redis | None:
    return state.runtime.redis  # type: ignore[no-any-return]


def provide_redis_url(state: State) -> str:
    """The Redis URL in use (the embedded server's when ``REDIS_URL`` is unset); ``""`` before it opens."""
    return state.runtime.redis_url  # type: ignore[no-any-return]


def provide_cluster(state: State) -> ClusterHandle | None:
    return state.runtime.cluster  # type: ignore[no-any-return]


def provide_dispatcher(state: State) -> Dispatcher | None:
    return state.runtime.dispatcher  # type: ignore[no-any-return]
