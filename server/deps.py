"""Dependencies injected into controllers with ``Provide``; all of them come from app.state."""

from __future__ import annotations

from litestar.datastructures import State

from scheduler.records.assets import AssetStore
from scheduler.records.clip_versions import ClipVersionStore
from scheduler.wiring.runtime import Runtime
from scheduler.admission.service import JobService
from scheduler.settings import Settings
from scheduler.records.jobs import JobStore

__all__ = [
    "provide_assets",
    "provide_clip_versions",
    "provide_runtime",
    "provide_service",
    "provide_settings",
    "provide_store",
]


def provide_runtime(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def provide_settings(state: State) -> Settings:
    return state.runtime.settings  # type: ignore[no-any-return]


def provide_store(state: State) -> JobStore:
    return state.runtime.store  # type: ignore[no-any-return]


def provide_assets(state: State) -> AssetStore:
    return state.runtime.assets  # type: ignore[no-any-return]


def provide_clip_versions(state: State) -> ClipVersionStore:
    return state.runtime.clip_versions  # type: ignore[no-any-return]


def provide_service(state: State) -> JobService:
    return state.runtime.service  # type: ignore[no-any-return]
