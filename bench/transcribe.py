"""Transcribe benchmark: the ``transcribe`` job (POST -> completed) against one faster-whisper call.

Run: ``.venv/bin/python bench/transcribe.py [--runs 3] [--workers 2 1] [--repeat 1]``

Material: espeak-ng reading the 20 Harvard sentences of tests/speechgen.py with 0.6-1.5 s silences between
them (~67 s; ``--repeat N`` lays them out N times), so the reference text is known and the WER is exact.

Contenders, on the same machine in the same run:
  pipeline   ``POST /jobs/?job_type=transcribe`` with the WAV as ``source_uri``, polled every 100 ms until
             ``completed``, against a server (``python -m server``) with a LocalCluster of ``--workers`` worker
             processes (1 thread each). Everything counts: HTTP, queueing, dispatch, probe, extract_audio, VAD,
             window planning, the window fan-out, merge, captions, and writing the four output files.
             The first job of each server loads the model in its workers (``cold``); the next ``--runs``
             are ``warm``.
  single     ``WhisperModel(<the same tiny.en folder>, compute_type="int8").transcribe(audio,
             vad_filter=True, word_timestamps=True)`` in this process, the segments generator consumed.
             The model load is timed apart; ``cpu_threads`` is faster-whisper's default (all cores).
Each single run is interleaved with a pipeline run, so both see the same background load (other
people's processes share the machine: the load average is recorded with every run).

Reported per contender: wall seconds (median of the warm runs), real-time factor = wall / audio
seconds (lower is faster), WER against the known text. For the pipeline it also reports where the
time went, from the job's own log (each line stamped when the dispatcher heard of it),
and the Whisper compute time of each window (measured in the worker). Output: bench/out/transcribe.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (  # noqa: E402
    CpuMeter,
    ServerProcess,
    machine_info,
    parse_ts,
    print_table,
    record_durations,
    submit,
    wait_job,
    warn_if_loaded,
    write_json,
)

from tests import speechgen as sg  # noqa: E402  (the same espeak material as the tests)

# How often the client polls GET /jobs/{id}. Every poll costs the server (and this process) a few
# CPU milliseconds on the same 2 cores the workers need: at 20 ms the polling alone slowed the
# job from ~2.7 s to ~5 s. 100 ms is closer to what a UI does and adds at most 0.1 s to the wall time.
POLL_S = 0.1

# Log lines that close a stage of the transcribe graph, in graph order (see graphs/transcribe.yaml).
_STAGES = ("probe", "audio", "vad", "windows", "transcribe", "merge", "captions")


def make_material(repeat: int) -> sg.Composed:
    sentences = list(sg.SENTENCES) * repeat
    return sg.compose_sentences(sentences, [0.6, 1.0, 0.8, 1.5, 0.7])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the single faster-whisper call ----------------------------------------------------------
class Single:
    def __init__(self, model_path: str) -> None:
        from faster_whisper import WhisperModel

        t0 = time.perf_counter()
        self.model = WhisperModel(model_path, compute_type="int8")
        self.load_s = time.perf_counter() - t0

    def run(self, layout: sg.Composed) -> dict[str, Any]:
        load_before = loadavg()
        t0, c0 = time.perf_counter(), time.process_time()
        segments, _info = self.model.transcribe(layout.audio, vad_filter=True, word_timestamps=True)
        texts = [s.text for s in segments]  # the generator does the work: consume it inside the timing
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        text = " ".join(t.strip() for t in texts)
        return {"wall_s": wall, "cpu_s": cpu, "rtf": wall / layout.duration, "wer": sg.wer(layout.text, text),
                "loadavg_before": load_before, "loadavg_after": loadavg()}


# -- the pipeline ----------------------------------------------------------------------------
def timeline(record: dict[str, Any]) -> dict[str, Any]:
    """Where a job's time went, from its record and log (seconds since started_at)."""
    started = parse_ts(record["started_at"]) or 0.0
    stages: dict[str, float] = {}
    windows: list[float] = []
    for entry in record["result_payload"]["log"]:
        message, at = entry["message"], (parse_ts(entry["timestamp"]) or started) - started
        m = re.fullmatch(r"(\w+) done", message) or re.fullmatch(r"(\w+): (\d+)/(\d+) done", message)
        if m and m.group(1) in _STAGES and (m.lastindex == 1 or m.group(2) == m.group(3)):
            stages[m.group(1)] = round(at, 3)
        w = re.match(r"Transcribed window \d+/\d+ .*: \d+ words in ([\d.]+) s", message)
        if w:
            windows.append(float(w.group(1)))
    return {**record_durations(record), "stage_done_at_s": stages, "window_compute_s": windows}


async def run_pipeline(client: httpx.AsyncClient, server: ServerProcess, source: str,
                       layout: sg.Composed) -> dict[str, Any]:
    load_before = loadavg()
    with CpuMeter(server) as meter:
        t0 = time.perf_counter()
        job = await submit(client, "transcribe", {"project_id": "bench", "source_uri": source})
        record = await wait_job(client, job["id"], interval=POLL_S, timeout=600)
        wall = time.perf_counter() - t0
    if record["status"] != "completed":
        raise RuntimeError(f"transcribe job {record['status']}: {record.get('error_message')}")
    asset = record["result_payload"]["outputs"]["transcript"]
    doc = (await client.get(asset["url"])).json()
    text = " ".join(s["text"] for s in doc["segments"])
    # CPU of the server's whole process tree (API + dispatcher, Dask scheduler and workers, Redis)
    # while the job ran: unlike wall time, it barely depends on what else runs on the machine.
    cpu = meter.result["server_main_cpu_s"] + meter.result["server_children_cpu_s"]
    return {"wall_s": wall, "cpu_s": cpu, "rtf": wall / layout.duration, "wer": sg.wer(layout.text, text),
            "loadavg_before": load_before, "loadavg_after": loadavg(), "job_id": record["id"], **timeline(record)}


async def bench_workers(workers: int, wav: Path, layout: sg.Composed, single: Single, runs: int,
                        keep_tmp: bool) -> dict[str, Any]:
    server = ServerProcess(dask_workers=workers, keep_tmp=keep_tmp)
    server.start()
    try:
        print(f"[bench] server with {workers} Dask worker(s) ready in {server.startup_s:.1f}s", flush=True)
        server.media_root.mkdir(parents=True, exist_ok=True)
        (server.media_root / wav.name).write_bytes(wav.read_bytes())
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            cold = await run_pipeline(client, server, wav.name, layout)
            print(f"[bench]   cold: {cold['wall_s']:.2f}s (model load in the workers)", flush=True)
            warm, singles = [], []
            for i in range(runs):
                warm.append(await run_pipeline(client, server, wav.name, layout))
                singles.append(single.run(layout))
                print(f"[bench]   run {i + 1}/{runs}: pipeline {warm[-1]['wall_s']:.2f}s, "
                      f"single {singles[-1]['wall_s']:.2f}s, load {warm[-1]['loadavg_before'][0]:.1f}", flush=True)
    finally:
        code = server.stop()
    return {"workers": workers, "startup_s": server.startup_s, "exit_code": code, "cold": cold,
            "warm": warm, "single": singles}


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summary_rows(results: dict[str, Any]) -> tuple[list[list[Any]], dict[str, Any]]:
    duration = results["audio"]["seconds"]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    all_single = [s for c in results["configs"] for s in c["single"]]
    for c in results["configs"]:
        w = c["warm"]
        key = f"pipeline_{c['workers']}w"
        summary[key] = {"wall_s": median_of(w, "wall_s"), "rtf": median_of(w, "wall_s") / duration,
                        "cpu_s": median_of(w, "cpu_s"), "wer": median_of(w, "wer"),
                        "cold_wall_s": c["cold"]["wall_s"], "loadavg_1m": [r["loadavg_before"][0] for r in w]}
        rows.append([f"pipeline, {c['workers']} worker(s)", len(w), summary[key]["wall_s"], min(r["wall_s"] for r in w),
                     summary[key]["rtf"], summary[key]["cpu_s"], summary[key]["wer"] * 100, c["cold"]["wall_s"],
                     statistics.fmean(r["loadavg_before"][0] for r in w)])
    summary["single"] = {"wall_s": median_of(all_single, "wall_s"), "rtf": median_of(all_single, "wall_s") / duration,
                         "cpu_s": median_of(all_single, "cpu_s"), "wer": median_of(all_single, "wer"),
                         "model_load_s": results["single_model_load_s"],
                         "loadavg_1m": [r["loadavg_before"][0] for r in all_single]}
    rows.append(["faster-whisper, one call", len(all_single), summary["single"]["wall_s"],
                 min(r["wall_s"] for r in all_single), summary["single"]["rtf"], summary["single"]["cpu_s"],
                 summary["single"]["wer"] * 100, results["single_model_load_s"] + all_single[0]["wall_s"],
                 statistics.fmean(r["loadavg_before"][0] for r in all_single)])
    return rows, summary


def report(results: dict[str, Any]) -> None:
    audio = results["audio"]
    print(f"\n{audio['seconds']:.1f} s of espeak speech ({audio['words']} words, {audio['sentences']} sentences), "
          f"tiny.en int8, {results['machine']['cpus']} CPUs")
    rows, summary = summary_rows(results)
    print_table(rows, ["contender", "runs", "median s", "best s", "RTF", "cpu s", "WER %", "cold s", "load 1m"])
    print("(cold: the first job of a fresh server, whose workers load the model; for the single call, model "
          "load + first call)")
    if "pipeline_2w" in summary and "pipeline_1w" in summary:
        print(f"scaling 1 -> 2 workers: {summary['pipeline_1w']['wall_s'] / summary['pipeline_2w']['wall_s']:.2f}x")
    print()
    rows = []
    for c in results["configs"]:
        best = min(c["warm"], key=lambda r: r["wall_s"])
        st = best["stage_done_at_s"]
        rows.append([f"{c['workers']} worker(s)", best["queued_s"] or 0.0, *(st.get(s, float("nan")) for s in _STAGES),
                     best["running_s"] or 0.0, len(best["window_compute_s"]), sum(best["window_compute_s"])])
    print("where the time went (fastest warm run; seconds after started_at when each stage was done):")
    print_table(rows, ["server", "queued", *_STAGES, "running", "windows", "whisper cpu-s"])
    results["summary"] = summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per server configuration")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="Dask worker counts to measure")
    parser.add_argument("--repeat", type=int, default=1, help="lay the 20 sentences out this many times")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the servers' temp folders (and logs)")
    args = parser.parse_args()
    if not sg.have_espeak():
        print(sg.ESPEAK_MISSING, file=sys.stderr)
        return 1

    t_all = time.perf_counter()
    layout = make_material(args.repeat)
    from operators.speech.whisper import resolve_model

    model_path = resolve_model("tiny.en")
    single = Single(model_path)
    results: dict[str, Any] = {
        "benchmark": "transcribe",
        "machine": machine_info(),
        "args": vars(args),
        "model": {"name": "tiny.en", "path": model_path, "compute_type": "int8"},
        "audio": {"seconds": layout.duration, "sentences": len(layout.utterances),
                  "words": len(sg.normalize(layout.text))},
        "single_model_load_s": single.load_s,
        "loadavg_before": loadavg(),
        "configs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        wav = sg.write_wav(Path(tmp) / "speech.wav", layout.audio)
        for workers in args.workers:
            results["configs"].append(asyncio.run(bench_workers(workers, wav, layout, single, args.runs, args.keep_tmp)))
    results["loadavg_after"] = loadavg()
    results["wall_s"] = time.perf_counter() - t_all
    report(results)
    path = write_json("transcribe.json", results)
    warn_if_loaded(r["loadavg_before"][0] for c in results["configs"] for r in c["warm"] + c["single"])
    print(f"\ntotal {results['wall_s']:.1f}s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
