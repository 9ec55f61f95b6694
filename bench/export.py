"""Export benchmark: the social bundle (``mp4-1080p``, ``hls``, ``gif``) against the ffmpeg CLI on the same machine.

Run: ``.venv/bin/python bench/export.py [--quick] [--workers 2,1] [--runs 1]``

The source is ingest's benchmark source (``ingest.make_source``, cached in ``bench/out/media/``): 60 s of
1080p30 ``testsrc2`` H.264 (2 s GOP) with an AAC stereo sine (``--quick``: 10 s of 360p). The reference is
the three ffmpeg CLI commands that make the same products, run one after the other (their walls summed):

  1. the MP4: H.264 High (veryfast, CRF 21, 8 Mb/s peak, a keyframe every 2 s), AAC 192k 48 kHz, faststart;
  2. the HLS ladder in one command: ``split`` into 1080/720/480/360, the same H.264 settings with each rung's
     peak bitrate, fMP4 segments of 6 s, an audio rendition, ``-var_stream_map`` and a master playlist;
  3. the GIF in two passes: ``fps=15,scale=480:-2,palettegen``, then ``paletteuse`` (sierra2_4a dithering).

The export job is run twice after them: with ``loudness: null`` (the same products as the commands, the
like-for-like comparison) and with the default loudness target (-14 LUFS, -1 dBTP: two more passes over the
sound, measure and normalise, which the commands do not do). Both include the job's own verification (every
file read back; the HLS package parsed and every segment decoded) and, on the product side, the framework
(HTTP, Redis, dispatcher, Dask). Per run: wall, CPU seconds (the ffmpeg children's user+sys; the server's
process tree), the task stream (``ingest.analyse_tasks``: compute per node, framework overhead, utilisation)
and the CPU seconds other processes used meanwhile.

Output: ``bench/out/export.json`` (``--quick``: ``bench/out/export_quick.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ServerProcess, machine_info, print_table, write_json  # noqa: E402
from ingest import busy_cpu_s, completed_or_raise, ffmpeg_bin, make_source, timed_job  # noqa: E402

BUNDLE = ["mp4-1080p", "hls", "gif"]
#: (short side, peak bitrate) of the ladder, as the hls preset has it.
LADDER = [(1080, "8M"), (720, "4500k"), (480, "2M"), (360, "1M")]
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "21", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-sc_threshold", "0"]


def ffmpeg_commands(source: Path, out: Path, height: int, fps: int) -> list[tuple[str, list[str]]]:
    """The three commands, for a source of ``height`` lines: MP4, HLS ladder, two-pass GIF."""
    base = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    gop = str(2 * fps)
    mp4 = [*base, "-i", str(source), *H264, "-maxrate", "8M", "-bufsize", "16M", "-g", gop, "-keyint_min", gop,
           "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-movflags", "+faststart", str(out / "mp4-1080p.mp4")]
    rungs = [(h, rate) for h, rate in LADDER if h <= height] or [(height, "1M")]
    split = f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs)))
    chains = [f"[s{i}]scale=-2:{h}:flags=bicubic[v{i}]" for i, (h, _) in enumerate(rungs)]
    hls = [*base, "-i", str(source), "-filter_complex", ";".join([split, *chains])]
    for i, (_, rate) in enumerate(rungs):
        hls += ["-map", f"[v{i}]", f"-maxrate:v:{i}", rate, f"-bufsize:v:{i}", str(2 * int(rate[:-1]))
                + rate[-1]]
    hls += ["-map", "a:0", *H264, "-g", gop, "-keyint_min", gop, "-c:a", "aac", "-b:a", "192k", "-ar", "48000",
            "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
            "-hls_flags", "independent_segments", "-master_pl_name", "master.m3u8",
            "-var_stream_map", " ".join([*(f"v:{i},agroup:aud" for i in range(len(rungs))),
                                         "a:0,agroup:aud,default:yes"]),
            "-hls_segment_filename", str(out / "hls" / "%v" / "seg_%05d.m4s"), str(out / "hls" / "%v" / "index.m3u8")]
    gif_filter = "fps=15,scale=480:-2:flags=bicubic"
    palette = [*base, "-i", str(source), "-vf", f"{gif_filter},palettegen=stats_mode=full", str(out / "palette.png")]
    gif = [*base, "-i", str(source), "-i", str(out / "palette.png"), "-lavfi",
           f"{gif_filter}[x];[x][1:v]paletteuse=dither=sierra2_4a:diff_mode=rectangle", str(out / "gif.gif")]
    return [("mp4", mp4), ("hls", hls), ("gif_palette", palette), ("gif", gif)]


def run_ffmpeg(source: Path, height: int, fps: int) -> dict[str, Any]:
    """The commands one after the other: each one's wall and CPU (user+sys of the child), and the sums."""
    steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ffmpeg-export-") as tmp:
        out = Path(tmp)
        load = os.getloadavg()
        busy0 = busy_cpu_s()
        for name, cmd in ffmpeg_commands(source, out, height, fps):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            steps[name] = {"wall_s": wall, "cpu_s": cpu, "command": " ".join(cmd[6:])}
        busy = busy_cpu_s() - busy0
        sizes = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()
                 and p.suffix in (".mp4", ".gif", ".m3u8")}
    wall = sum(s["wall_s"] for s in steps.values())
    cpu = sum(s["cpu_s"] for s in steps.values())
    return {"wall_s": wall, "cpu_s": cpu, "foreign_cpu_s": max(0.0, busy - cpu), "loadavg": load, "steps": steps,
            "outputs": sizes}


async def export_once(client: httpx.AsyncClient, dask: Any, server: ServerProcess, source_uri: str, workers: int,
                      loudness: Any, timeout: float) -> dict[str, Any]:
    payload = {"project_id": "bench", "source_uri": source_uri, "presets": BUNDLE}
    if loudness is not ...:
        payload["loudness"] = loudness
    record, timing = await timed_job(client, dask, server, "export", payload, timeout, workers)
    completed_or_raise(record, server)
    result = record.get("result_payload") or {}
    outputs = result.get("outputs") or {}
    log = [e.get("message", "") for e in result.get("log") or []]
    encode_cpu = [float(m.group(1)) for line in log if (m := re.search(r"Encoded chunk .* ([\d.]+) CPU-s", line))]
    products = {name: {k: (outputs.get(name) or {}).get(k) for k in ("size", "meta")} for name in BUNDLE}
    return {
        **timing,
        "encode_cpu_s": sum(encode_cpu),
        "encode_tasks_logged": len(encode_cpu),
        "hls_files": len((outputs.get("hls_files") or {}).get("hls") or []),
        "loudness": outputs.get("loudness"),
        "products": products,
        "log_tail": log[-8:],
    }


async def run_workers(args: argparse.Namespace, workers: int, source: Path, warm: Path, height: int) -> dict[str, Any]:
    from distributed import Client

    server = ServerProcess(dask_workers=workers, keep_tmp=args.keep_tmp)
    server.start()
    out: dict[str, Any] = {"workers": workers, "startup_s": server.startup_s, "runs": []}
    try:
        print(f"[bench] {workers} worker(s): server ready in {server.startup_s:.1f}s (log: {server.log_path})",
              flush=True)
        server.add_media(source, warm)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            diag = (await client.get("/health/diagnostics")).json()
            dask = await Client(diag["cluster"]["scheduler_address"], asynchronous=True, timeout="20s")
            try:
                t0 = time.perf_counter()
                await export_once(client, dask, server, warm.name, workers, None, args.timeout)
                out["warmup_s"] = time.perf_counter() - t0
                for i in range(args.runs):
                    ff = run_ffmpeg(source, height, args.fps)
                    steps = ", ".join(f"{k} {v['wall_s']:.1f}s" for k, v in ff["steps"].items())
                    print(f"[bench]   run {i + 1}: ffmpeg {ff['wall_s']:.2f}s ({steps}), load {ff['loadavg'][0]:.2f}",
                          flush=True)
                    run: dict[str, Any] = {"ffmpeg": ff}
                    for label, loudness in (("export", None), ("export_loudness", ...)):
                        ex = await export_once(client, dask, server, source.name, workers, loudness, args.timeout)
                        t = ex["tasks"]
                        print(f"[bench]   run {i + 1}: {label} {ex['wall_s']:.2f}s = {ex['wall_s'] / ff['wall_s']:.2f}x "
                              f"ffmpeg, {ex['cpu_s']:.1f} CPU-s vs {ff['cpu_s']:.1f}, framework overhead "
                              f"{t['overhead_s']:.2f}s ({t['overhead_pct']:.1f}%), load {ex['loadavg'][0]:.2f}",
                              flush=True)
                        run[label] = ex
                        run[f"ratio_{label}"] = ex["wall_s"] / ff["wall_s"]
                        run[f"cpu_ratio_{label}"] = ex["cpu_s"] / ff["cpu_s"]
                    out["runs"].append(run)
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
            for label in ("export", "export_loudness"):
                ex, t = r[label], r[label]["tasks"]
                rows.append([f"{label} {w['workers']}w #{i + 1}", r["ffmpeg"]["wall_s"], ex["wall_s"],
                             r[f"ratio_{label}"], r["ffmpeg"]["cpu_s"], ex["cpu_s"], r[f"cpu_ratio_{label}"],
                             t["task_seconds"], t["overhead_s"], t["utilisation_pct"], r["ffmpeg"]["foreign_cpu_s"],
                             ex["foreign_cpu_s"]])
    print_table(rows, ["run", "ffmpeg s", "export s", "ratio", "ffmpeg cpu s", "export cpu s", "cpu ratio",
                       "task s", "overhead s", "util %", "others' cpu s (ff)", "others' cpu s (ex)"])
    first = data["workers"][0]
    if first["runs"]:
        last = first["runs"][-1]["export"]["tasks"]
        print(f"\ntasks of the last {first['workers']}-worker export (seconds from POST):")
        print_table([[name, n["tasks"], n["compute_s"], n["max_task_s"], n["start_rel_s"], n["stop_rel_s"]]
                     for name, n in last["nodes"].items()], ["node", "tasks", "compute s", "max task s", "start", "stop"])
        ff = first["runs"][-1]["ffmpeg"]["steps"]
        print("\nffmpeg steps: " + ", ".join(f"{k} {v['wall_s']:.2f}s / {v['cpu_s']:.1f} CPU-s" for k, v in ff.items()))
    print()
    for key, value in data["summary"].items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


def summarise(workers: list[dict[str, Any]]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    by = {w["workers"]: w for w in workers if w["runs"]}
    for n, w in by.items():
        runs = w["runs"]
        s[f"ffmpeg_wall_s ({n}w runs, best)"] = min(r["ffmpeg"]["wall_s"] for r in runs)
        s[f"ffmpeg_cpu_s ({n}w runs, best)"] = min(r["ffmpeg"]["cpu_s"] for r in runs)
        for label in ("export", "export_loudness"):
            s[f"{label}_wall_s ({n}w, best)"] = min(r[label]["wall_s"] for r in runs)
            s[f"{label}_cpu_s ({n}w, best)"] = min(r[label]["cpu_s"] for r in runs)
            s[f"ratio {label}/ffmpeg wall ({n}w, best)"] = min(r[f"ratio_{label}"] for r in runs)
            s[f"ratio {label}/ffmpeg cpu ({n}w, best)"] = min(r[f"cpu_ratio_{label}"] for r in runs)
    if 1 in by and 2 in by:
        s["export 1w / export 2w (best walls)"] = (min(r["export"]["wall_s"] for r in by[1]["runs"])
                                                    / min(r["export"]["wall_s"] for r in by[2]["runs"]))
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s 360p source: a smoke run")
    parser.add_argument("--seconds", type=float, help="source length (default 60, --quick 10)")
    parser.add_argument("--height", type=int, help="source height, 16:9 (default 1080, --quick 360)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--workers", default="2,1", help="Dask worker counts to run, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="ffmpeg + export pairs per worker count")
    parser.add_argument("--timeout", type=float, default=1800.0, help="max seconds of one export job")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the servers' temp folders (and logs)")
    args = parser.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    height = args.height or (360 if args.quick else 1080)
    width = (height * 16 // 9 + 1) // 2 * 2

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    source = make_source(width, height, args.fps, seconds, 2.0)
    warm = make_source(320, 180, args.fps, 2.0, 2.0)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    results = [asyncio.run(run_workers(args, w, source, warm, height)) for w in workers]
    data = {
        "benchmark": "export",
        "machine": machine_info(),
        "source": {"path": str(source), "width": width, "height": height, "fps": args.fps, "seconds": seconds,
                   "size": source.stat().st_size},
        "presets": BUNDLE,
        "args": vars(args),
        "wall_s": time.perf_counter() - t_all,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "workers": results,
        "summary": summarise(results),
    }
    report(data)
    path = write_json("export_quick.json" if args.quick else "export.json", data)
    cpus = os.cpu_count() or 1
    noisy = [(w["workers"], i + 1, k, r[k]["foreign_cpu_s"] / (cpus * r[k]["wall_s"]))
             for w in results for i, r in enumerate(w["runs"]) for k in ("ffmpeg", "export", "export_loudness")]
    noisy = [n for n in noisy if n[3] > 0.05]
    if noisy:
        print(f"\nWARNING: other processes used more than 5% of the {cpus} CPUs during "
              + ", ".join(f"{k} ({w} worker(s) #{i}: {share:.0%})" for w, i, k, share in noisy)
              + ": those figures are pessimistic; compare ratios measured back to back, or run again.")
    print(f"\ntotal {data['wall_s']:.1f}s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
