"""Ingest benchmark: the ``ingest`` job, POST to completed, against the ffmpeg CLI on the same machine.

Run: ``.venv/bin/python bench/ingest.py [--quick] [--workers 2,1] [--runs 1]``

The source is a generated 1080p30, 60 s clip (``--quick``: 360p, 10 s) with a 2 s GOP and AAC stereo,
made once with the ffmpeg CLI and cached under ``bench/out/media/``. The reference is the command from
the issue, which makes the same two products the ingest job makes (a 720p H.264/AAC proxy and a 16 kHz
mono WAV) and nothing else::

    ffmpeg -i in -vf scale=-2:720 -c:v libx264 -preset veryfast -crf 23 -c:a aac proxy.mp4 \
           -vn -ac 1 -ar 16000 audio.wav

The ingest job does more (exact probe, keyframe split, per-chunk encode with retries, a verified
faststart join, poster, sprite sheet, waveform peaks, progress and log events). For each worker count
the server is started (not timed), a small warm-up ingest runs, and then, back to back, for each run:
the ffmpeg CLI, then the ingest job. Every ratio compares an ingest run with the ffmpeg run just
before it, so slow drifts in machine load hit both sides alike.

Timings of every task come from the Dask scheduler's task stream (the benchmark connects its own Dask
client to the server's scheduler). From them:

  compute_union_s   time during which at least one operator was running on some worker
  overhead_s        wall - compute_union_s: time in which no operator ran anywhere, i.e. the framework
                    alone (HTTP POST, Redis, dispatcher claim, graph submission, Dask scheduling and
                    result hand-over between dependent tasks, asset registration, the final status
                    write, and up to one client poll interval)
  task_seconds      sum of all tasks' compute time (codec work plus the operators' own Python)
  utilisation       task_seconds / (wall * workers)

CPU accounting, beside the walls: the ffmpeg child's user+sys time; the server's process tree (main process:
HTTP, dispatcher, Dask scheduler; children: Dask workers, redis-server); ``transcode_cpu_s``, the process
CPU time each media.transcode_chunk logs; and ``foreign_cpu_s``, the machine's busy CPU time during the
measurement minus ours: other people's processes competing for the cores (the load average also counts
this benchmark's own previous run, so it is recorded but is a poor guide).

Output: ``bench/out/ingest.json`` (``--quick``: ``bench/out/ingest_quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    OUT_DIR,
    CpuMeter,
    ServerProcess,
    machine_info,
    print_table,
    record_durations,
    submit,
    write_json,
)

MEDIA_DIR = OUT_DIR / "media"
#: The client polls GET /jobs/{id} every 10 ms at first, slowing to every 100 ms: each poll costs the
#: server (and this process) CPU that the workers would otherwise use, and the detection delay it adds
#: (at most one interval) is counted as framework overhead.
POLL_MIN_S, POLL_MAX_S = 0.01, 0.1


async def wait_done(client: httpx.AsyncClient, job_id: str, timeout: float) -> tuple[dict[str, Any], int]:
    t0 = time.monotonic()
    polls = 0
    while True:
        polls += 1
        record = (await client.get(f"/jobs/{job_id}")).raise_for_status().json()
        if record["status"] in ("completed", "failed", "cancelled"):
            return record, polls
        elapsed = time.monotonic() - t0
        if elapsed > timeout:
            raise TimeoutError(f"job {job_id} not finished in {timeout}s: {record['status']}")
        await asyncio.sleep(min(POLL_MAX_S, POLL_MIN_S + elapsed / 20))


# -- media ---------------------------------------------------------------------------
def ffmpeg_bin() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise SystemExit("ffmpeg CLI not found: run bench/run.sh (it installs Debian's ffmpeg) or apt-get install ffmpeg")
    return path


def make_source(width: int, height: int, fps: int, seconds: float, gop_seconds: float) -> Path:
    """A realistic camera-like H.264/AAC MP4 (testsrc2 + a sine), generated once and cached."""
    name = f"src_{width}x{height}_{fps}fps_{seconds:g}s_gop{gop_seconds:g}.mp4"
    path = MEDIA_DIR / name
    if path.exists() and path.stat().st_size > 0:
        return path
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    cmd = [
        ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", f"{seconds:g}", "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-g", str(round(gop_seconds * fps)), "-keyint_min", str(round(gop_seconds * fps)),
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-movflags", "+faststart", str(tmp),
    ]
    print(f"[bench] generating {name} (once, cached in {MEDIA_DIR})", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    print(f"[bench] generated in {time.perf_counter() - t0:.1f}s", flush=True)
    return path


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)


def run_ffmpeg(source: Path, height: int) -> dict[str, Any]:
    """The issue's reference command; wall and CPU time (user+sys of the child)."""
    with tempfile.TemporaryDirectory(prefix="bench-ffmpeg-") as tmp:
        cmd = [
            ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-i", str(source), "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "23", "-c:a", "aac", str(Path(tmp) / "proxy.mp4"),
            "-vn", "-ac", "1", "-ar", "16000", str(Path(tmp) / "audio.wav"),
        ]
        load = os.getloadavg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = busy_cpu_s()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        busy = busy_cpu_s() - busy0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sizes = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "foreign_cpu_s": max(0.0, busy - cpu), "loadavg": load, "outputs": sizes, "command": " ".join(cmd[6:])}


# -- task stream -----------------------------------------------------------------------
def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def analyse_tasks(tasks: list[dict[str, Any]], job_id: str, t_post: float, t_done: float,
                  workers: int) -> dict[str, Any]:
    """Per-node compute times and the framework's share, from the scheduler's task stream."""
    mine = [t for t in tasks if job_id in str(t["key"])]
    intervals: list[tuple[float, float]] = []
    nodes: dict[str, dict[str, Any]] = {}
    timeline = []
    for t in mine:
        node = str(t["key"]).split("-", 1)[0]
        comp = [(s["start"], s["stop"]) for s in t["startstops"] if s["action"] == "compute"]
        other = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] != "compute")
        intervals += comp
        secs = sum(b - a for a, b in comp)
        if comp:
            timeline.append({"key": str(t["key"]).replace(f"-{job_id}", ""), "worker": str(t.get("worker")),
                             "start_rel_s": round(comp[0][0] - t_post, 4), "compute_s": round(secs, 4),
                             "transfer_s": round(other, 4)})
        n = nodes.setdefault(node, {"tasks": 0, "compute_s": 0.0, "max_task_s": 0.0, "transfer_s": 0.0,
                                    "first_start": float("inf"), "last_stop": 0.0})
        n["tasks"] += 1
        n["compute_s"] += secs
        n["max_task_s"] = max(n["max_task_s"], secs)
        n["transfer_s"] += other
        if comp:
            n["first_start"] = min(n["first_start"], min(a for a, _ in comp))
            n["last_stop"] = max(n["last_stop"], max(b for _, b in comp))
    for n in nodes.values():
        n["start_rel_s"] = n.pop("first_start") - t_post
        n["stop_rel_s"] = n.pop("last_stop") - t_post
    wall = t_done - t_post
    union = _union(intervals)
    task_s = sum(b - a for a, b in intervals)
    first = min((a for a, _ in intervals), default=t_post)
    last = max((b for _, b in intervals), default=t_done)
    return {
        "tasks": len(mine),
        "nodes": dict(sorted(nodes.items(), key=lambda kv: kv[1]["start_rel_s"])),
        "task_seconds": task_s,
        "compute_union_s": union,
        "overhead_s": wall - union,
        "overhead_pct": 100 * (wall - union) / wall if wall else float("nan"),
        "before_first_task_s": first - t_post,
        "gaps_between_tasks_s": (last - first) - union,
        "after_last_task_s": t_done - last,
        "utilisation_pct": 100 * task_s / (wall * workers) if wall else float("nan"),
        "timeline": sorted(timeline, key=lambda x: x["start_rel_s"]),
    }


# -- ingest ----------------------------------------------------------------------------
async def timed_job(client: httpx.AsyncClient, dask: Any, server: ServerProcess, job_type: str,
                    payload: dict[str, Any], timeout: float, workers: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit one job and time it: POST to seeing it end, the server's CPU, others' CPU meanwhile, its tasks.

    Returns the final record and the timing fields every benchmark reports (``tasks`` when it completed).
    """
    index = await dask.scheduler.get_task_stream_index()
    load = os.getloadavg()
    busy0 = busy_cpu_s()
    with CpuMeter(server) as cpu:
        t_post = time.time()
        job = await submit(client, job_type, payload)
        record, polls = await wait_done(client, job["id"], timeout)
        t_done = time.time()
    busy = busy_cpu_s() - busy0
    timing: dict[str, Any] = {
        "job_id": record["id"],
        "wall_s": t_done - t_post,
        "loadavg": load,
        "polls": polls,
        "server": record_durations(record),
        "cpu": cpu.result,
        "cpu_s": cpu.result["server_main_cpu_s"] + cpu.result["server_children_cpu_s"],
        "workers_cpu_s": cpu.result["server_children_cpu_s"],
        "foreign_cpu_s": max(0.0, busy - sum(v for k, v in cpu.result.items() if k.endswith("_cpu_s"))),
    }
    if record["status"] == "completed":
        tasks = await dask.scheduler.get_task_stream(start_index=index)
        timing["tasks"] = analyse_tasks(tasks, record["id"], t_post, t_done, workers)
    return record, timing


def completed_or_raise(record: dict[str, Any], server: ServerProcess) -> None:
    if record["status"] != "completed":
        raise RuntimeError(f"{record['job_type']} {record['id']} ended {record['status']}: "
                           f"{record.get('error_message')}\n{server.log_tail()}")


async def ingest_once(client: httpx.AsyncClient, dask: Any, server: ServerProcess, source_uri: str,
                      workers: int, payload_extra: dict[str, Any], timeout: float) -> dict[str, Any]:
    payload = {"project_id": "bench", "source_uri": source_uri, **payload_extra}
    record, timing = await timed_job(client, dask, server, "ingest", payload, timeout, workers)
    completed_or_raise(record, server)
    result = record.get("result_payload") or {}
    outputs = result.get("outputs") or {}
    proxy = (outputs.get("proxy") or [{}])[0]
    # media.transcode_chunk logs its process CPU time: "... at 75 fps, 4.02 CPU-s".
    chunk_cpu = [float(m.group(1)) for e in (result.get("log") or [])
                 if (m := re.search(r"Transcoded chunk .* ([\d.]+) CPU-s", e.get("message", "")))]
    return {
        **timing,
        "transcode_cpu_s": sum(chunk_cpu) if chunk_cpu else None,
        "transcode_chunks_logged": len(chunk_cpu),
        "proxy": {k: proxy.get(k) for k in ("size", "meta")} if proxy else None,
        "log_tail": [e.get("message") for e in (result.get("log") or [])[-6:]],
    }


async def run_workers(args: argparse.Namespace, workers: int, source: Path, warm: Path) -> dict[str, Any]:
    from distributed import Client

    server = ServerProcess(dask_workers=workers, keep_tmp=args.keep_tmp)
    server.start()
    out: dict[str, Any] = {"workers": workers, "startup_s": server.startup_s, "runs": []}
    try:
        print(f"[bench] {workers} worker(s): server ready in {server.startup_s:.1f}s (log: {server.log_path})",
              flush=True)
        server.add_media(source, warm)
        payload_extra = {"chunk_seconds": args.chunk_seconds} if args.chunk_seconds else {}
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            diag = (await client.get("/health/diagnostics")).json()
            dask = await Client(diag["cluster"]["scheduler_address"], asynchronous=True, timeout="20s")
            try:
                t0 = time.perf_counter()
                await ingest_once(client, dask, server, warm.name, workers, {}, args.timeout)
                out["warmup_s"] = time.perf_counter() - t0
                for i in range(args.runs):
                    ff = run_ffmpeg(source, args.height_out)
                    print(f"[bench]   run {i + 1}: ffmpeg {ff['wall_s']:.2f}s (load {ff['loadavg'][0]:.2f})",
                          flush=True)
                    ing = await ingest_once(client, dask, server, source.name, workers, payload_extra, args.timeout)
                    t = ing["tasks"]
                    print(f"[bench]   run {i + 1}: ingest {ing['wall_s']:.2f}s = {ing['wall_s'] / ff['wall_s']:.2f}x "
                          f"ffmpeg, framework overhead {t['overhead_s']:.2f}s ({t['overhead_pct']:.1f}%), "
                          f"load {ing['loadavg'][0]:.2f}", flush=True)
                    out["runs"].append({"ffmpeg": ff, "ingest": ing, "ratio": ing["wall_s"] / ff["wall_s"]})
            finally:
                await dask.close()
    finally:
        out["exit_code"] = server.stop()
    return out


def report(data: dict[str, Any]) -> None:
    print()
    rows = []
    for w in data["workers"]:
        for i, r in enumerate(w["runs"]):
            ing, t = r["ingest"], r["ingest"]["tasks"]
            rows.append([f"{w['workers']} worker(s) #{i + 1}", r["ffmpeg"]["wall_s"], ing["wall_s"], r["ratio"],
                         t["task_seconds"], t["overhead_s"], t["overhead_pct"], t["utilisation_pct"],
                         r["ffmpeg"]["cpu_s"], ing["cpu_s"], r["ffmpeg"]["foreign_cpu_s"], ing["foreign_cpu_s"],
                         r["ffmpeg"]["loadavg"][0], ing["loadavg"][0]])
    print_table(rows, ["ingest", "ffmpeg s", "ingest s", "ratio", "task s", "overhead s", "overhead %",
                       "util %", "ffmpeg cpu s", "ingest cpu s", "others' cpu s (ff)", "others' cpu s (ing)",
                       "load ff", "load ing"])
    last = data["workers"][0]["runs"][-1]["ingest"]["tasks"] if data["workers"][0]["runs"] else None
    if last:
        print(f"\ntasks of the last {data['workers'][0]['workers']}-worker run (seconds from POST):")
        print_table([[name, n["tasks"], n["compute_s"], n["max_task_s"], n["start_rel_s"], n["stop_rel_s"]]
                     for name, n in last["nodes"].items()],
                    ["node", "tasks", "compute s", "max task s", "start", "stop"])
        print(f"before first task {last['before_first_task_s']:.3f}s, gaps {last['gaps_between_tasks_s']:.3f}s, "
              f"after last task {last['after_last_task_s']:.3f}s")
    s = data["summary"]
    print()
    for key, value in s.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


def summarise(workers: list[dict[str, Any]]) -> dict[str, Any]:
    def best(w: dict[str, Any], key: str) -> float:
        return min(r[key] if key == "ratio" else r["ingest"]["wall_s"] for r in w["runs"])

    s: dict[str, Any] = {}
    by = {w["workers"]: w for w in workers if w["runs"]}
    for n, w in by.items():
        runs = w["runs"]
        s[f"ffmpeg_wall_s ({n}w runs, best)"] = min(r["ffmpeg"]["wall_s"] for r in runs)
        s[f"ingest_wall_s ({n}w, best)"] = best(w, "wall")
        s[f"ratio ingest/ffmpeg ({n}w, best)"] = best(w, "ratio")
        s[f"overhead_pct ({n}w, max)"] = max(r["ingest"]["tasks"]["overhead_pct"] for r in runs)
    if 1 in by and 2 in by:
        s["ingest 1w / ingest 2w (best walls)"] = best(by[1], "wall") / best(by[2], "wall")
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s 360p source: a smoke run of ~1 minute")
    parser.add_argument("--seconds", type=float, help="source length (default 60, --quick 10)")
    parser.add_argument("--height", type=int, help="source height, 16:9 (default 1080, --quick 360)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop-seconds", type=float, default=2.0, help="source keyframe interval")
    parser.add_argument("--height-out", type=int, default=720, help="proxy height (ffmpeg's scale=-2:H)")
    parser.add_argument("--workers", default="2,1", help="Dask worker counts to run, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="ffmpeg+ingest pairs per worker count")
    parser.add_argument("--chunk-seconds", type=float, help="override the graph's chunk_seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds of one ingest job")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the servers' temp folders (and logs)")
    args = parser.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    height = args.height or (360 if args.quick else 1080)
    width = (height * 16 // 9 + 1) // 2 * 2

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    source = make_source(width, height, args.fps, seconds, args.gop_seconds)
    warm = make_source(320, 180, args.fps, 2.0, args.gop_seconds)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    results = [asyncio.run(run_workers(args, w, source, warm)) for w in workers]
    data = {
        "benchmark": "ingest",
        "machine": machine_info(),
        "source": {"path": str(source), "width": width, "height": height, "fps": args.fps, "seconds": seconds,
                   "gop_seconds": args.gop_seconds, "size": source.stat().st_size},
        "args": vars(args),
        "wall_s": time.perf_counter() - t_all,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "workers": results,
        "summary": summarise(results),
    }
    report(data)
    path = write_json("ingest_quick.json" if args.quick else "ingest.json", data)
    # The load average also counts this benchmark's own previous run; the busy CPU time of other processes
    # during each measurement says whether something else competed for the cores.
    cpus = os.cpu_count() or 1
    noisy = [(w["workers"], i + 1, k, r[k]["foreign_cpu_s"] / (cpus * r[k]["wall_s"]))
             for w in results for i, r in enumerate(w["runs"]) for k in ("ffmpeg", "ingest")]
    noisy = [n for n in noisy if n[3] > 0.05]
    if noisy:
        print(f"\nWARNING: other processes used more than 5% of the {cpus} CPUs during "
              + ", ".join(f"{k} ({w} worker(s) #{i}: {share:.0%})" for w, i, k, share in noisy)
              + ": those figures are pessimistic; compare ratios measured back to back, or run again.")
    print(f"\ntotal {data['wall_s']:.1f}s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
