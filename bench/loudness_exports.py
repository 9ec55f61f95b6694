"""Exports with loudness, many at once: how many of the submitted jobs complete (issue 20, item 1).

A server (``python -m server``, 2 Dask workers of ``--threads`` threads each, ``MAX_RUNNING_JOBS=12``) gets N export jobs
at once (default 12), each of its own clip (3 to 6 s, a 440 Hz sine, tiny 160x90 video), with the
default loudness target and the ``audio-mp3`` preset, so the loudness passes are most of the work. Output:
completed out of submitted, the failures' messages, and the wall time. ``bench/out/loudness_exports.json``.

Run from a checkout: ``.venv/bin/python bench/loudness_exports.py [--jobs 12]``. To compare with another
revision, run this file with that revision's checkout as the working directory and on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ServerProcess, submit, wait_job, write_json  # noqa: E402
from tests.mediagen import make_clip  # noqa: E402


async def run(jobs: int, threads: int) -> dict[str, Any]:
    server = ServerProcess(env={"MAX_RUNNING_JOBS": str(jobs), "DASK_THREADS_PER_WORKER": str(threads)},
                           dask_workers=2)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clips = [make_clip(Path(tmp) / f"clip{i}.mp4", seconds=3.0 + 0.25 * i, size=(160, 90))
                     for i in range(jobs)]
            server.add_media(*clips)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            started = time.monotonic()
            submitted = await asyncio.gather(*(submit(client, "export", {
                "project_id": "bench_loud", "source_uri": f"clip{i}.mp4", "presets": ["audio-mp3"]})
                for i in range(jobs)))
            done = await asyncio.gather(*(wait_job(client, job["id"], interval=0.2, timeout=600) for job in submitted))
            wall = time.monotonic() - started
    finally:
        server.stop()
    failed = [r["error_message"] for r in done if r["status"] != "completed"]
    return {"submitted": jobs, "threads_per_worker": threads, "completed": jobs - len(failed), "failures": failed,
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2, help="threads per Dask worker (2 workers)")
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.threads))
    write_json("loudness_exports", result)
    print(result)


if __name__ == "__main__":
    main()
