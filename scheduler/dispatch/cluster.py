"""The Dask cluster: an existing scheduler (DASK_SCHEDULER_ADDRESS) or a LocalCluster."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import dask
from distributed import Client, LocalCluster

from operators.context import CORES_PER_TASK_ENV
from scheduler.settings import Settings

__all__ = ["ClusterHandle"]

_log = logging.getLogger("scheduler.dispatch.cluster")


class ClusterHandle:
    """Owns the asynchronous Dask client (and the LocalCluster, when it started one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.error: str | None = None

    async def start(self) -> Client:
        address = self.settings.dask_scheduler_address
        if address:
            self.client = await Client(address, asynchronous=True, timeout="20s")
            return self.client
        workers = self.settings.dask_workers or max(1, os.cpu_count() or 1)
        threads = self.settings.dask_threads_per_worker
        # Codec threads per task (operators.media._av.codec_threads): one task's share of the
        # cores, so that tasks running side by side do not contend with each other's threads.
        cores_per_task = max(1, (os.cpu_count() or 1) // (workers * threads))
        # Read once, when the scheduler starts. Dask's 1.1 sends a 1-thread worker 2 tasks of a
        # fan-out (ceil(1.1 x 1)): a 4 s chunk then waited behind another on a busy worker while
        # the other worker, done, sat idle until work stealing moved it (1.6 s of one ingest).
        with dask.config.set({"distributed.scheduler.worker-saturation": self.settings.dask_worker_saturation}):
            self.cluster = await LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                memory_limit=self.settings.dask_memory_limit,
                dashboard_address=self.settings.dashboard_address,
                # Importing the operators (PyAV, numpy, onnxruntime) and the task runner (the
                # graph engine, ~0.5 s) at worker start keeps that out of the first task each
                # worker runs.
                preload=["operators", "pipelines.run.task"],
                env={CORES_PER_TASK_ENV: str(cores_per_task)},
                # Off by default: the profiler samples every thread's stack every 10 ms, which cost
                # 0.2-0.3 CPU-s per minute of 1080p transcoded (two workers, 3 pairs of runs), and
                # the codec time it would show is inside C calls it cannot see into anyway.
                config={"distributed.worker.profile.enabled": self.settings.dask_worker_profile},
                asynchronous=True,
            )
        self.client = await Client(self.cluster, asynchronous=True)
        return self.client

    async def close(self) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()

    async def info(self) -> dict[str, Any]:
        """Scheduler address, workers, threads and dashboard link, for diagnostics."""
        client = self.client
        if client is None or client.status not in ("running", "connecting"):
            return {"connected": False, "scheduler_address": self.settings.dask_scheduler_address,
                    "error": self.error or "no Dask client"}
        try:
            info = await asyncio.wait_for(client.scheduler.identity(n_workers=-1), timeout=3)
        except Exception as exc:  # noqa: BLE001
            return {"connected": False, "scheduler_address": client.scheduler.address,
                    "error": str(exc) or type(exc).__name__}
        workers = info.get("workers", {})
        return {
            "connected": True,
            "scheduler_address": info.get("address") or client.scheduler.address,
            "workers": len(workers),
            "threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
            "dashboard_link": client.dashboard_link,
        }
