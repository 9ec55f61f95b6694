"""A tightened talk's render against the render of the talk as it is (issue 22's figure).

A talk of espeak sentences with pauses and fillers (``tests/tightengen.py``'s layout, repeated), over a
640x360 25 fps video whose frames draw their index, is uploaded to a server (``python -m server``, a
LocalCluster of 2 workers). Then, on the same server and in this order:

1. ``tighten`` with ``silences: fast``, ``fillers: true`` and ``render: false`` (it transcribes the talk: the
   transcript is then given to the others, so each step below is timed without transcription);
2. the same ``tighten`` again, with that transcript: the dry run's wall time through the API;
3. ``render`` of the untightened talk (a clip version of the whole source), and ``render`` of the tightened
   clip version (both with the source's canvas): wall time from POST to completed, and output seconds.

Writes ``bench/out/tighten_render.json``. Run: ``.venv/bin/python bench/tighten_render.py [--repeat 3]``.
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

from bench.common import ServerProcess, submit_and_wait, write_json  # noqa: E402
from tests import speechgen as sg  # noqa: E402
from tests import tightengen as tg  # noqa: E402

PROJECT = "bench_tighten"


async def _timed(client: httpx.AsyncClient, job_type: str, payload: dict[str, Any], **params: Any
                 ) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    record = await submit_and_wait(client, job_type, {"project_id": PROJECT, **payload}, interval=0.05,
                                   timeout=1800, **params)
    if record["status"] != "completed":
        raise RuntimeError(f"{job_type}: {record['status']}: {record.get('error_message')}")
    return time.perf_counter() - started, record


async def run(repeat: int, video: Path) -> dict[str, Any]:
    server = ServerProcess(dask_workers=2)
    server.start()
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            upload = await client.post("/assets/", params={"project_id": PROJECT, "filename": video.name},
                                       content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
            source = upload.json()["id"]
            ask = {"source_asset_id": source, "silences": {"preset": "fast"}, "fillers": True, "render": False}
            first, record = await _timed(client, "tighten", ask)
            outputs = record["result_payload"]["outputs"]
            transcript = outputs["transcript"]["id"]
            dry, record = await _timed(client, "tighten", {**ask, "transcript_asset_id": transcript})
            tightened = record["result_payload"]["outputs"]["clip_version_id"]
            version = (await client.get(f"/clip-versions/{tightened}")).json()
            canvas = version["timeline"]["canvas"]
            whole = {"canvas": canvas, "tracks": [{"type": "video", "clips": [{"asset": source}]}]}
            plain = (await client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": whole})).json()
            rows = []
            for _ in range(repeat):
                for name, cv in (("untightened", plain["id"]), ("tightened", tightened)):
                    wall, done = await _timed(client, "render", {}, clip_version_id=cv)
                    rows.append({"render": name, "wall_s": round(wall, 2),
                                 "output_s": done["result_payload"]["outputs"]["video"].get("duration")})
            return {"tighten_with_transcription_s": round(first, 2), "tighten_dry_run_s": round(dry, 2),
                    "summary": outputs["summary"], "renders": rows}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4, help="times the test talk's layout is repeated")
    args = parser.parse_args()
    tg.SIZE = (640, 360)  # the video the talk is laid over (the tests use 160x96)
    composed = sg.compose(list(tg.LAYOUT) * args.copies)
    with tempfile.TemporaryDirectory() as tmp:
        video = tg.indexed_talk_video(Path(tmp) / "talk.mp4", composed.audio)
        result = asyncio.run(run(args.repeat, video))
    result["talk_s"] = round(composed.audio.size / sg.RATE, 2)
    for name in ("untightened", "tightened"):
        walls = sorted(r["wall_s"] for r in result["renders"] if r["render"] == name)
        result[f"{name}_render_median_s"] = walls[len(walls) // 2]
    result["render_ratio"] = round(result["tightened_render_median_s"] / result["untightened_render_median_s"], 3)
    print({k: v for k, v in result.items() if k != "renders"})
    write_json("tighten_render", result)


if __name__ == "__main__":
    main()
