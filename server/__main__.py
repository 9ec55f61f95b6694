"""``python -m server``: serve the API (and, by default, the dispatcher and a LocalCluster)."""

from __future__ import annotations

import logging

import uvicorn

from scheduler.settings import Settings
from server.app import create_app


def main() -> None:
    settings = Settings()
    level = settings.log_level.lower()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=level, access_log=settings.access_log)


if __name__ == "__main__":
    main()
