"""``python -m scheduler``: run the dispatcher alone, for deployments that split it from the API."""

from __future__ import annotations

import asyncio
import logging
import signal

from scheduler.wiring.runtime import Runtime
from scheduler.settings import Settings


async def _main(settings: Settings) -> None:
    runtime = Runtime.prepare(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start_cluster()
        await runtime.start_dispatcher()
        if runtime.dispatcher is None:
            raise SystemExit("no Dask cluster: see the log above")
        await runtime.start_webhooks()
        await runtime.start_metrics()
        logging.getLogger("scheduler").info("dispatcher %s running", runtime.dispatcher.owner)
        await stop.wait()
    finally:
        await runtime.close()


if __name__ == "__main__":
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(settings))
