"""``POST /signed-urls``: URLs a browser can use without an ``Authorization`` header.

``<video>``, ``<img>``, hls.js's segment requests, ``EventSource`` and ``WebSocket`` cannot send a
bearer token. A front end asks here (with its token) for a URL that carries a grant in its path
(:mod:`server.signing`) and hands that URL to the element. For an asset: its content (and, for an
HLS master, every file of the package, by the relative URIs the playlists hold); for a job: its
server-sent events and its WebSocket.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import Provide
from msgspec import UNSET, Struct, UnsetType
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scheduler.records.assets import AssetStore
from scheduler.records.jobs import JobStore
from scheduler.settings import Settings
from scheduler.timefmt import format_ts
from server.deps import provide_assets, provide_settings, provide_store
from server.errors import unprocessable
from server.openapi import responses
from server.signing import UrlSigner

__all__ = ["SIGNED_PREFIX", "SignedUrl", "SignedUrlController", "SignedUrlRequest", "provide_signer"]

SIGNED_PREFIX = "/v1/signed"


def provide_signer(state: State) -> UrlSigner:
    return state.signer  # type: ignore[no-any-return]


class SignedUrlRequest(BaseModel):
    """What to sign: one asset (its content URL; for an HLS master, the whole package through its relative
    URIs) or one job (its events and WebSocket URLs), for ``expires_in`` seconds."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["asset_id"]}, {"required": ["job_id"]}]})

    asset_id: str | None = Field(None, min_length=1, max_length=200, description="An asset: its content URL")
    job_id: str | None = Field(None, min_length=1, max_length=200,
                               description="A job: its events (SSE) and WebSocket URLs")
    expires_in: int = Field(3600, ge=1, description="Seconds the URLs work for (at most SIGNED_URL_MAX_SECONDS)")

    @model_validator(mode="after")
    def _one(self) -> SignedUrlRequest:
        if (self.asset_id is None) == (self.job_id is None):
            raise ValueError("give exactly one of asset_id and job_id")
        return self


class SignedUrl(Struct, kw_only=True):
    """Paths on this server (prefix them with its base URL); each works without a token until ``expires_at``."""

    expires_at: str
    url: str | UnsetType = UNSET
    events_url: str | UnsetType = UNSET
    ws_url: str | UnsetType = UNSET


class SignedUrlController(Controller):
    path = "/signed-urls"
    tags = ["assets"]
    dependencies = {
        "signer": Provide(provide_signer, sync_to_thread=False),
        "settings": Provide(provide_settings, sync_to_thread=False),
        "assets": Provide(provide_assets, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
    }

    @post("/", status_code=201, summary="Sign an asset's or a job's URLs for a browser", operation_id="signUrls",
          responses=responses(201, SignedUrl, 404, 422, 503, description="The signed URLs"),
          description="For `<video src>`, `<img src>`, hls.js and native HLS players (an HLS master's relative "
                      "URIs stay signed), `EventSource` and `WebSocket`, which cannot send a bearer token. "
                      "Example: `curl -X POST -H 'Authorization: Bearer $TOKEN' -d '{\"asset_id\": \"…\"}' "
                      "http://localhost:8000/v1/signed-urls`")
    async def sign(self, signer: UrlSigner, settings: Settings, assets: AssetStore, store: JobStore,
                   data: SignedUrlRequest) -> dict[str, Any]:
        if data.expires_in > settings.signed_url_max_seconds:
            raise unprocessable(["body", "expires_in"],
                                f"expires_in may be at most {settings.signed_url_max_seconds} s (SIGNED_URL_MAX_SECONDS)")
        expires = int(time.time()) + data.expires_in
        at = format_ts(datetime.fromtimestamp(expires, UTC))
        if data.asset_id is not None:
            await assets.get(data.asset_id)  # 404 for an unknown asset
            grant = signer.grant("a", data.asset_id, expires)
            return {"expires_at": at, "url": f"{SIGNED_PREFIX}/{grant}/assets/{data.asset_id}/content"}
        assert data.job_id is not None
        await store.get(data.job_id)  # 404: Job X not found
        grant = signer.grant("j", data.job_id, expires)
        return {"expires_at": at, "events_url": f"{SIGNED_PREFIX}/{grant}/jobs/{data.job_id}/events",
                "ws_url": f"{SIGNED_PREFIX}/{grant}/ws/jobs/{data.job_id}"}
