"""The Litestar application: ``create_app()`` wires controllers and handlers (each declares its own
dependencies, from :mod:`server.deps`)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.wiring.runtime import Runtime
from scheduler.settings import APP_NAME, Settings
from server.controllers.graphs import GraphController
from server.controllers.health import HealthController
from server.controllers.jobs import JobController
from server.auth import TokenAuth, auth_middleware
from server.signing import UrlSigner
from server.errors import EXCEPTION_HANDLERS
from server.openapi import finish_openapi

__all__ = ["DOCS_ASSETS", "LINGER_BYTES", "LINGER_SECONDS", "cors_config", "create_app", "lingering_close"]

_log = logging.getLogger("server")

#: Where the docs pages' scripts are served from (the app's own copy of Swagger UI).
DOCS_ASSETS = "/schema/assets"
LINGER_BYTES = 64 * 1024 * 1024
"""Most bytes of a refused request body read (and dropped) after the answer, before the response ends."""
LINGER_SECONDS = 5.0
"""Longest that reading lasts."""


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app. Graphs load here, so a broken graph stops start-up with its file and line."""
    settings = settings or Settings()
    from scheduler.admission.graphs import GraphCatalog

    catalog = GraphCatalog.load(settings.graphs_dir)
    if settings.models_dir is not None:
        # Read by the transcribe model check here and, through the environment, by LocalCluster workers.
        os.environ["MODELS_DIR"] = str(settings.models_dir)
    auth = TokenAuth(settings.tokens())
    if auth.enabled:
        _log.info("API auth on: %d bearer token(s)", len(auth))
    elif settings.app_env.lower() == "production":
        _log.warning("APP_ENV=production but no API_TOKENS / API_TOKENS_FILE: the API is open to anyone who "
                     "can reach it")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime(settings=settings, catalog=catalog)
        runtime.storage_root_ready()
        runtime.open_redis()
        app.state.runtime = runtime
        # Live updates are encoded as the HTTP responses are, so a WebSocket message is GET /jobs/{id}'s body.
        await runtime.start_events(encode=encode_json)
        await runtime.start_webhooks()
        await runtime.start_metrics()
        await runtime.start_cluster()
        if settings.run_dispatcher:
            await runtime.start_dispatcher()
        try:
            yield
        finally:
            await runtime.close()

    from server.controllers.assets import AssetController
    from server.controllers.brand_kits import BrandKitController
    from server.controllers.cache import CacheController
    from server.controllers.transcripts import TranscriptController
    from server.controllers.content import AssetContentController
    from server.controllers.signed import SIGNED_PREFIX, SignedUrlController
    from server.controllers.clip_versions import ClipVersionController
    from server.controllers.live import job_events, job_updates
    from server.controllers.metrics import metrics_handler

    handlers = [HealthController, JobController, GraphController, AssetController, AssetContentController,
                ClipVersionController, BrandKitController, TranscriptController, SignedUrlController, CacheController,
                job_events, job_updates,
                metrics_handler(public=settings.metrics_public)]
    # What a signed URL opens: an asset's bytes (and its HLS package's files) and a job's live updates.
    signed = [AssetContentController, job_events, job_updates]
    signer = UrlSigner(settings.url_signing_secret, settings.tokens())
    allow: dict[str, str] = {}
    app = Litestar(
        # /v1/ is the stable prefix (and the one in the OpenAPI document); the unprefixed routes are the
        # reference's, and answer the same.
        route_handlers=[Router(path="/v1", route_handlers=handlers),
                        Router(path="/", route_handlers=handlers, include_in_schema=False),
                        Router(path=SIGNED_PREFIX + "/{grant:str}", route_handlers=signed, include_in_schema=False),
                        # The docs' scripts and styles, from the swagger-ui-bundle wheel: /schema works offline.
                        create_static_files_router(DOCS_ASSETS, [swagger_ui_path], opt={"public": True},
                                                   name="docs-assets")],
        middleware=[lingering_close, auth_middleware(auth, allow, signer)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings, "signer": signer}),
        openapi_config=OpenAPIConfig(title=APP_NAME, version="0.1.0", path="/schema", render_plugins=[
            SwaggerRenderPlugin(js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                                path=["/", "/swagger"])]),
        cors_config=cors_config(settings.cors_origins()),
        # JSON bodies; the upload handler streams its body under MAX_UPLOAD_BYTES instead.
        request_max_body_size=settings.max_json_bytes,
    )
    allow.update(_allowed_methods(app))
    public = {"health", "diagnostics"} | ({"getMetrics"} if settings.metrics_public else set())
    finish_openapi(app, catalog, auth=auth.enabled, public_operations=public)
    return app


def cors_config(origins: list[str]) -> CORSConfig | None:
    """Litestar's CORS for ``CORS_ALLOW_ORIGINS`` (None: no CORS headers, as before the setting existed).

    A browser page may send what the API reads (the bearer token, JSON, an Idempotency-Key, a byte range, the
    SSE resume id) and read what a player or uploader needs back (ranges, sizes, ETags, the next page's Link).
    """
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins, allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Range", "Last-Event-ID"],
        expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "ETag", "Link", "Idempotent-Replayed"],
        max_age=600)


def _allowed_methods(app: Litestar) -> dict[str, str]:
    """Each HTTP route's path template and every method its handlers answer (HEAD with GET, OPTIONS)."""
    from litestar.routes import HTTPRoute

    found: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            found.setdefault(route.path_format, set()).update(route.methods)
    return {path: ", ".join(sorted(methods | {"OPTIONS"})) for path, methods in found.items()}


def lingering_close(app: ASGIApp) -> ASGIApp:
    """Middleware: a client that sends the whole of a body it was refused still reads the answer.

    An answer given before the body was read in full (a 413 decided from Content-Length or past the limit
    mid-stream, a 401) leaves the rest of the body unread. When the server then closes the connection
    (``Connection: close``, HTTP/1.0, the h11 server), the kernel answers the unread bytes with a reset, and
    a client still writing its body gets "connection reset" instead of the 413. So the answer is sent whole but
    its end; then the body is read and dropped (at most :data:`LINGER_BYTES`, for at most
    :data:`LINGER_SECONDS`, until the client has sent it all or left), and only then does the response end.
    A client that stopped at the headers has its answer at once (it ends with the client leaving, or the bound).
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await app(scope, receive, send)
            return
        read_all = False

        async def tracking_receive() -> Message:
            nonlocal read_all
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read_all = True
            return message

        async def lingering_send(message: Message) -> None:
            nonlocal read_all
            if read_all or message["type"] != "http.response.body" or message.get("more_body", False):
                await send(message)
                return
            await send({**message, "more_body": True})  # the whole answer, but not its end
            read_all = True
            await _discard_body(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        await app(scope, tracking_receive, lingering_send)

    return middleware


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
    return False


async def _discard_body(receive: Receive) -> None:
    received = 0
    with anyio.move_on_after(LINGER_SECONDS):
        while received <= LINGER_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
