"""Result-cache benchmark: what an edit costs to render again, and an export of a just-rendered clip version.

Run: ``.venv/bin/python bench/cache.py [--timeout 1800] [--keep-tmp]``
Environment: ``BENCH_SECONDS`` (default 60) and ``BENCH_HEIGHT`` (default 1920: a 1080x1920 render), as in
``bench/render.py``, whose edit this is (7 clips of a generated 16:9 source with 0.5 s crossfades, cropped to
9:16, a title, word-highlight captions, music at -18 dB; libx264 veryfast crf 23). The source (testsrc2 and a
sine, 2 s GOP) and the music (a sine) are made with PyAV as the tests make theirs: no ffmpeg CLI needed. Smaller run, for a shared
machine: ``BENCH_SECONDS=60 BENCH_HEIGHT=640 .venv/bin/python bench/cache.py``.

One server (``common.ServerProcess``, 2 single-thread Dask workers, the cache on), in order, each timed from
POST to completed:

1. **cold**: the edit, nothing cached (a small warm-up render of another edit first, so the workers are warm);
2. **caption edit**: the same edit, its transcript with one word changed (a new transcript asset), a word in the
   middle of a segment: only the segment that shows its caption cue should be encoded (two when the cue
   crosses a segment boundary), and the sound mix is served from the cache;
3. **moved cut**: the same edit, the 4th clip's in and out points 15 frames later (the clip's length kept): the
   segments that show that clip (and the crossfades around it) are encoded again, the others are served;
4. **export of a just-rendered clip version**: a clip version of the edit is made and rendered (served whole
   from the cache), then exported to ``mp4-720p`` (cold: the render is a new file to it) and exported again
   (served: the encodes and the loudness pass hang on the render's content, not its job).

For each: wall seconds, ``result_payload.cache`` (hits, misses, seconds saved) and the segments encoded (the
render's "Rendered segment" log lines). Output: ``bench/out/cache.json`` (other sizes ``cache_<s>s_<h>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ServerProcess, machine_info, print_table, submit, wait_job, write_json  # noqa: E402
from render import (  # noqa: E402
    FPS,
    GOP_SECONDS,
    MEDIA_DIR,
    PROJECT,
    ROOT,
    env_float,
    make_edit,
    make_transcript,
    make_transcript_asset,
    timeline_json,
    upload,
)

sys.path.insert(0, str(ROOT))
from tests.mediagen import make_audio_only, make_clip  # noqa: E402

OUTPUT = {"preset": "veryfast", "crf": 23}


def edited_transcript(original: Path, at: float) -> Path:
    """The transcript with the word spoken nearest ``at`` seconds changed (its caption cue, a few seconds)."""
    body = json.loads(original.read_text())
    words = [w for s in body["segments"] for w in s["words"]]
    min(words, key=lambda w: abs(w["start"] - at))["word"] = " pineapple"
    for segment in body["segments"]:
        segment["text"] = "".join(w["word"] for w in segment["words"]).strip()
    path = original.with_name(original.stem + "_edited.json")
    path.write_text(json.dumps(body, indent=1))
    return path


def moved_cut(timeline: dict[str, Any], frames: int = 15) -> dict[str, Any]:
    moved = json.loads(json.dumps(timeline))
    clip = moved["tracks"][0]["clips"][3]
    clip["in"], clip["out"] = (f"{int(clip[k][:-1]) + frames}f" for k in ("in", "out"))
    return moved


async def timed(client: httpx.AsyncClient, job_type: str, payload: dict[str, Any], timeout: float,
                **params: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    job = await submit(client, job_type, payload, **params)
    record = await wait_job(client, job["id"], interval=0.02, timeout=timeout)
    wall = time.perf_counter() - t0
    result = record.get("result_payload") or {}
    log = [e["message"] for e in result.get("log") or []]
    return {"job_id": record["id"], "status": record["status"], "error": record.get("error_message"),
            "wall_s": round(wall, 2), "cache": result.get("cache"),
            "segments_encoded": sum("Rendered segment" in line for line in log),
            "cache_line": next((line for line in log if line.startswith("Cache: ")), None),
            "outputs": result.get("outputs")}


async def run(args: argparse.Namespace, seconds: float, height: int) -> dict[str, Any]:
    edit, warm_edit = make_edit(seconds, height), make_edit(2.0, 320)
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    source = MEDIA_DIR / f"cache_src_{edit.src_width}x{edit.src_height}_{seconds:g}s.mp4"
    if not source.exists():
        make_clip(source, seconds=seconds, size=(edit.src_width, edit.src_height), fps=str(FPS),
                  gop=int(FPS * GOP_SECONDS))
    music = MEDIA_DIR / f"cache_music_{seconds:g}s.m4a"
    if not music.exists():
        make_audio_only(music, seconds=seconds + 1, sample_rate=48000)
    files = {"source": source, "music": music, "transcript": make_transcript(seconds)}
    # In the middle of a 5 s segment (the render's default): a cue there rarely reaches the next one.
    files["edited"] = edited_transcript(files["transcript"], 5 * (seconds // 10) + 2.5)
    server = ServerProcess(dask_workers=2, keep_tmp=args.keep_tmp)
    server.start()
    out: dict[str, Any] = {"startup_s": server.startup_s, "steps": {}}
    steps = out["steps"]
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            ids = {name: await upload(client, files[name], kind) for name, kind in
                   (("source", "video/mp4"), ("music", "audio/mp4"), ("transcript", "application/json"),
                    ("edited", "application/json"))}
            for name in ("transcript", "edited"):
                await make_transcript_asset(server, ids[name])
            timeline = timeline_json(edit, ids["source"], ids["transcript"], ids["music"])
            render = {"project_id": PROJECT, "output": OUTPUT}
            warm = timeline_json(warm_edit, ids["source"], ids["transcript"], ids["music"])
            await timed(client, "render", {**render, "timeline": warm}, args.timeout)
            steps["cold"] = await timed(client, "render", {**render, "timeline": timeline}, args.timeout)
            steps["caption_edit"] = await timed(client, "render", {
                **render, "timeline": timeline_json(edit, ids["source"], ids["edited"], ids["music"])}, args.timeout)
            steps["moved_cut"] = await timed(client, "render", {**render, "timeline": moved_cut(timeline)},
                                             args.timeout)
            cv = (await client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline})).json()
            steps["clip_version_render"] = await timed(client, "render", render, args.timeout,
                                                       clip_version_id=cv["id"])
            export = {"project_id": PROJECT, "presets": ["mp4-720p"]}
            steps["export_cold"] = await timed(client, "export", export, args.timeout, clip_version_id=cv["id"])
            steps["export_again"] = await timed(client, "export", export, args.timeout, clip_version_id=cv["id"])
            out["metrics"] = [line for line in (await client.get("/metrics")).text.splitlines()
                              if line.startswith("ave_cache_")]
    finally:
        out["server_log_tail"] = server.log_tail(20)
        out["exit_code"] = server.stop()
    for step in steps.values():
        step.pop("outputs", None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=1800.0, help="max seconds of one job")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the server's temp folder")
    args = parser.parse_args()
    seconds, height = env_float("BENCH_SECONDS", 60.0), int(env_float("BENCH_HEIGHT", 1920))
    load_before = os.getloadavg()
    result = asyncio.run(run(args, seconds, height))
    steps = result["steps"]
    cold = steps["cold"]["wall_s"]
    rows = [[name, s["status"], s["wall_s"], f"{100 * s['wall_s'] / cold:.0f}%" if name != "cold" else "100%",
             s["segments_encoded"], (s["cache"] or {}).get("hits"), (s["cache"] or {}).get("misses"),
             (s["cache"] or {}).get("seconds_saved")] for name, s in steps.items()]
    print_table(rows, ["step", "status", "wall s", "of cold", "segments encoded", "hits", "misses", "s saved"])
    data = {"benchmark": "cache", "machine": machine_info(), "seconds": seconds, "height": height,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), **result,
            "caption_edit_share_of_cold": steps["caption_edit"]["wall_s"] / cold}
    name = "cache.json" if (seconds, height) == (60.0, 1920) else f"cache_{seconds:g}s_{height}.json"
    print(f"caption edit: {100 * data['caption_edit_share_of_cold']:.1f}% of the cold render's wall time "
          f"(goal < 15%); results in {write_json(name, data)}")
    return 0 if all(s["status"] == "completed" for s in steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
