"""The Litestar application: ``create_app()`` wires controllers and handlers (each declares its own
dependencies, from :mod:`server.deps`)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.serialization import encode_json

from scheduler.wiring.runtime import Runtime
from scheduler.settings import APP_NAME, Settings
from server.controllers.graphs import GraphController
from server.controllers.health import HealthController
from server.controllers.jobs import JobController
from server.auth import TokenAuth, auth_middleware
from server.errors import EXCEPTION_HANDLERS
from server.openapi import finish_openapi

__all__ = ["create_app"]

_log = logging.getLogger("server")


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
    from server.controllers.clip_versions import ClipVersionController
    from server.controllers.live import job_events, job_updates
    from server.controllers.metrics import metrics_handler

    handlers = [HealthController, JobController, GraphController, AssetController, ClipVersionController,
                job_events, job_updates, metrics_handler(public=settings.metrics_public)]
    allow: dict[str, str] = {}
    app = Litestar(
        # /v1/ is the stable prefix (and the one in the OpenAPI document); the unprefixed routes are the
        # reference's, and answer the same.
        route_handlers=[Router(path="/v1", route_handlers=handlers),
                        Router(path="/", route_handlers=handlers, include_in_schema=False)],
        middleware=[auth_middleware(auth, allow)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(title=APP_NAME, version="0.1.0", path="/schema"),
        # JSON bodies; the upload handler streams its body under MAX_UPLOAD_BYTES instead.
        request_max_body_size=settings.max_json_bytes,
    )
    allow.update(_allowed_methods(app))
    public = {"health", "diagnostics"} | ({"getMetrics"} if settings.metrics_public else set())
    finish_openapi(app, catalog, auth=auth.enabled, public_operations=public)
    return app


def _allowed_methods(app: Litestar) -> dict[str, str]:
    """Each HTTP route's path template and every method its handlers answer (HEAD with GET, OPTIONS)."""
    from litestar.routes import HTTPRoute

    found: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            found.setdefault(route.path_format, set()).update(route.methods)
    return {path: ", ".join(sorted(methods | {"OPTIONS"})) for path, methods in found.items()}
