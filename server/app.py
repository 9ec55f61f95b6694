"""The Litestar application: ``create_app()`` wires controllers, dependencies and handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.serialization import encode_json

from scheduler.runtime import Runtime
from scheduler.settings import APP_NAME, Settings
from server.controllers import GraphController, HealthController, JobController
from server.deps import (
    provide_assets,
    provide_clip_versions,
    provide_runtime,
    provide_service,
    provide_settings,
    provide_store,
)
from server.errors import EXCEPTION_HANDLERS
from server.openapi import publish_payload_models

__all__ = ["create_app"]

_log = logging.getLogger("server")


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app. Graphs load here, so a broken graph stops start-up with its file and line."""
    settings = settings or Settings()
    from scheduler.graphs import GraphCatalog

    catalog = GraphCatalog.load(settings.graphs_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime(settings=settings, catalog=catalog)
        runtime.storage_root_ready()
        runtime.open_redis()
        app.state.runtime = runtime
        # Live updates are encoded as the HTTP responses are, so a WebSocket message is GET /jobs/{id}'s body.
        await runtime.start_events(encode=encode_json)
        await runtime.start_webhooks()
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

    app = Litestar(
        route_handlers=[HealthController, JobController, GraphController, AssetController, ClipVersionController,
                        job_events, job_updates],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "store": Provide(provide_store, sync_to_thread=False),
            "assets": Provide(provide_assets, sync_to_thread=False),
            "clip_versions": Provide(provide_clip_versions, sync_to_thread=False),
            "service": Provide(provide_service, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(title=APP_NAME, version="0.1.0", path="/schema"),
        request_max_body_size=None,
    )
    publish_payload_models(app, catalog)
    return app
