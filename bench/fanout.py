"""Fan-out bound: a 2-hour source ingested with tiny chunks, refused or bounded, and what it costs.

Run: ``.venv/bin/python bench/fanout.py [--hours 2] [--chunks 1,2] [--timeout 1200]``

The source is a 2-hour H.264 + AAC file made with PyAV (64x36 at 2 fps, a keyframe every second, 8 kHz
mono AAC), cached under ``bench/out/media/``. For each ``chunk_seconds`` the server is started and one
ingest is submitted; while it runs, the benchmark samples every 0.2 s:

  scheduler_tasks   tasks the Dask scheduler holds (all of them: only this job runs)
  server_rss_mb     resident memory of the server's main process: API, dispatcher and Dask scheduler
                    (the embedded default runs them in one process; the workers are its children)

``chunk_seconds: 1`` gives 7,200 chunks, over ingest's ``max_tasks: 4000``: the job must fail before any
transcode task is submitted, with a message naming the node, the count and the limit. ``chunk_seconds: 2``
gives 3,600, under it: the job runs them all, and the figures show what a fan-out that size costs the
process that drives it (results stay on the workers, so its memory should not grow with the chunks).

Output: ``bench/out/fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from distributed import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT_DIR, TERMINAL, ServerProcess, machine_info, submit, write_json  # noqa: E402

from tests.mediagen import make_clip  # noqa: E402

MEDIA_DIR = OUT_DIR / "media"


def source_of(hours: float) -> Path:
    path = MEDIA_DIR / f"fanout_{hours:g}h.mp4"
    if not path.exists():
        MEDIA_DIR.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".part.mp4")
        make_clip(tmp, seconds=hours * 3600, size=(64, 36), fps="2", gop=2, bframes=False, sample_rate=8000)
        tmp.rename(path)
        print(f"[bench] made {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f}s",
              flush=True)
    return path


async def sample(dask: Client, server: psutil.Process, peaks: dict[str, float], stop: asyncio.Event) -> None:
    def count(dask_scheduler: Any) -> int:
        return len(dask_scheduler.tasks)

    while not stop.is_set():
        tasks = await dask.run_on_scheduler(count)
        rss = server.memory_info().rss / 2**20
        peaks["scheduler_tasks"] = max(peaks.get("scheduler_tasks", 0), tasks)
        peaks["server_rss_mb"] = max(peaks.get("server_rss_mb", 0.0), rss)
        await asyncio.sleep(0.2)


async def ingest(server: ServerProcess, source: Path, chunk_seconds: float, timeout: float) -> dict[str, Any]:
    payload = {"project_id": "proj_fanout", "source_uri": source.name, "chunk_seconds": chunk_seconds,
               "renditions": [36], "preset": "ultrafast", "crf": 35, "audio_bitrate": 32000}
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        diag = (await client.get("/health/diagnostics")).json()
        dask = await Client(diag["cluster"]["scheduler_address"], asynchronous=True, timeout="20s")
        rss_idle = process.memory_info().rss / 2**20
        peaks: dict[str, float] = {}
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(dask, process, peaks, stop))
        try:
            t0 = time.perf_counter()
            job = await submit(client, "ingest", payload)
            while True:
                record = (await client.get(f"/jobs/{job['id']}")).raise_for_status().json()
                if record["status"] in TERMINAL or time.perf_counter() - t0 > timeout:
                    break
                await asyncio.sleep(0.5)
            wall = time.perf_counter() - t0
        finally:
            stop.set()
            await sampler
            await dask.close()
    outputs = (record.get("result_payload") or {}).get("outputs") or {}
    return {"chunk_seconds": chunk_seconds, "status": record["status"], "wall_s": round(wall, 2),
            "error_message": record.get("error_message"), "server_rss_idle_mb": round(rss_idle, 1),
            "peak_scheduler_tasks": int(peaks.get("scheduler_tasks", 0)),
            "peak_server_rss_mb": round(peaks.get("server_rss_mb", 0.0), 1),
            "chunks": (outputs.get("media_info") or {}).get("chunks") if isinstance(outputs, dict) else None}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--chunks", default="1,2", help="chunk_seconds values, comma separated")
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    source = source_of(args.hours)
    results = []
    for chunk_seconds in [float(c) for c in args.chunks.split(",")]:
        server = ServerProcess()
        server.start()
        try:
            server.add_media(source)
            result = await ingest(server, source, chunk_seconds, args.timeout)
        finally:
            server.stop()
        results.append(result)
        print(f"[bench] chunk_seconds {chunk_seconds:g}: {result['status']} in {result['wall_s']}s, peak "
              f"{result['peak_scheduler_tasks']} tasks on the scheduler, server RSS {result['server_rss_idle_mb']} "
              f"-> {result['peak_server_rss_mb']} MB; {result['error_message'] or ''}", flush=True)
    write_json("fanout.json", {"machine": machine_info(), "hours": args.hours, "source_bytes": source.stat().st_size,
                          "results": results})


if __name__ == "__main__":
    asyncio.run(main())
