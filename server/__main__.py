"""``python -m server``: serve the API (and, by default, the dispatcher and a LocalCluster)."""

from __future__ import annotations

import gc
import logging

import uvicorn

from scheduler.settings import Settings
from server.app import create_app
from server.auth import redact_log_handlers


def main() -> None:
    settings = Settings()
    level = settings.log_level.lower()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=level,
                            access_log=settings.access_log)  # (configures uvicorn's log handlers)
    # Tokens never reach a log, whatever LOG_LEVEL says.
    redact_log_handlers("uvicorn", "uvicorn.error", "uvicorn.access", "websockets")
    # What is imported and built by now (Dask, the operators, the graphs and their models) lives as long as
    # the process: keep it out of the cyclic GC's full collections, which would otherwise walk it again and again.
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
