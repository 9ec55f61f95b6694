"""Transcribe benchmark: the ``transcribe`` job (POST -> completed) against faster-whisper's own pipelines.

Run: ``.venv/bin/python bench/transcribe.py [--runs 3] [--workers 2 1] [--long-minutes 20]``
(``BENCH_LONG=1`` makes the long-form input 60 minutes).

Inputs, each with its exact reference text (espeak-ng reading the Harvard sentences of tests/speechgen.py,
and beckett.wav, the human recording useful-moonshine-onnx ships):
  dense   ~60 s of speech with no pauses: 12 sentences 50-150 ms apart, then beckett.wav 3 times.
  sparse  the 20 sentences with 0.6-1.5 s silences (~67 s): VAD removes a sixth of the audio.
  long    ``--long-minutes`` of the sentences, in a different order each round, with 0.2-3 s pauses and a
          beckett.wav every 20 sentences.

Contenders, on the same machine in the same run, each input as a 16 kHz WAV file:
  pipeline   ``POST /jobs/?job_type=transcribe`` against a server (``python -m server``) with a LocalCluster of
             ``--workers`` worker processes, polled every 100 ms until ``completed``: HTTP, queueing, probe, VAD,
             windows, the fan-out, merge, captions and the four output files all count. The first job of each
             server is reported as ``cold``.
  plain      ``WhisperModel(tiny.en, compute_type="int8").transcribe(path, vad_filter=True,
             word_timestamps=True)``, the segments consumed: what the faster-whisper README shows.
  batched    ``BatchedInferencePipeline(model).transcribe(path, batch_size=8, word_timestamps=True)``: what a user
             who wants speed picks.
plain and batched run in a fresh process each time (so their peak RSS is theirs); the model load is timed
apart and not counted; cpu_threads is faster-whisper's default (every core). Runs are interleaved, so all
contenders see the same background load (recorded with every run).

Reported per input and contender: wall s (median), RTF = wall / audio s, WER against the known text, CPU s,
and peak RSS (for the pipeline, the largest worker's peak, from /proc VmHWM). Output: bench/out/transcribe.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import CpuMeter, ServerProcess, machine_info, print_table, submit, wait_job, warn_if_loaded, write_json  # noqa: E402

from tests import speechgen as sg  # noqa: E402  (the same material as the tests)

# How often the client polls GET /jobs/{id}: every poll costs the server a few CPU ms on the cores the
# workers need (at 20 ms the polling alone slowed a job from 2.7 to 5 s); 100 ms is what a UI does.
POLL_S = 0.1
_CONTENDERS = ("plain", "batched")


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# -- inputs -----------------------------------------------------------------------------------
def _beckett() -> np.ndarray:
    return sg.decode_16k(sg.beckett_path())


def _join(parts: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, str]:
    return np.concatenate([a for a, _ in parts]), " ".join(t for _, t in parts)


def dense() -> tuple[np.ndarray, str]:
    speech = sg.compose_sentences(list(sg.SENTENCES)[:12], [0.05, 0.15, 0.1], lead=0.3, tail=0.1)
    return _join([(speech.audio, speech.text), *[(_beckett(), sg.BECKETT_TEXT)] * 3])


def sparse() -> tuple[np.ndarray, str]:
    speech = sg.minute_of_speech()
    return speech.audio, speech.text


def long_form(minutes: float) -> tuple[np.ndarray, str]:
    rng, parts, seconds = random.Random(7), [], 0.0
    while seconds < minutes * 60:
        order = list(sg.SENTENCES)
        rng.shuffle(order)
        speech = sg.compose_sentences(order, [0.2, 0.8, 3.0, 0.4, 1.5, 0.3], lead=0.5, tail=1.0)
        parts += [(speech.audio, speech.text), (_beckett(), sg.BECKETT_TEXT)]
        seconds += speech.duration + 10.0
    return _join(parts)


# -- faster-whisper's own pipelines, each in a fresh process ----------------------------------
def child(kind: str, wav: str) -> None:
    """``--child``: load the model, transcribe ``wav`` once, print one JSON line."""
    import resource

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from operators.speech.whisper import resolve_model

    t0 = time.perf_counter()
    model = WhisperModel(resolve_model("tiny.en"), compute_type="int8")
    load_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "plain":
        segments, _ = model.transcribe(wav, vad_filter=True, word_timestamps=True)
    else:
        segments, _ = BatchedInferencePipeline(model).transcribe(wav, batch_size=8, word_timestamps=True)
    text = " ".join(s.text.strip() for s in segments)  # the generator does the work: inside the timing
    print(json.dumps({"load_s": load_s, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "text": text}))


def run_child(kind: str, wav: Path, reference: str, seconds: float) -> dict[str, Any]:
    load = loadavg()
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(wav)], check=True, capture_output=True,
                         text=True, timeout=7200)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    text = result.pop("text")
    return {**result, "rtf": result["wall_s"] / seconds, "wer": sg.wer(reference, text), "loadavg": load}


# -- the pipeline -----------------------------------------------------------------------------
def worker_peaks_mb(server: ServerProcess) -> list[float]:
    """Peak RSS (VmHWM) of each Dask worker process of the server, in MB."""
    import psutil

    assert server.proc is not None
    peaks = []
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if "redis" in proc.name():
                continue
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        peaks.append(kb / 1024)
    return sorted(peaks, reverse=True)


async def run_job(client: httpx.AsyncClient, server: ServerProcess, name: str, reference: str,
                  seconds: float) -> dict[str, Any]:
    load = loadavg()
    with CpuMeter(server) as meter:
        t0 = time.perf_counter()
        job = await submit(client, "transcribe", {"project_id": "bench", "source_uri": name})
        record = await wait_job(client, job["id"], interval=POLL_S, timeout=7200)
        wall = time.perf_counter() - t0
    if record["status"] != "completed":
        raise RuntimeError(f"transcribe job {record['status']}: {record.get('error_message')}")
    doc = (await client.get(record["result_payload"]["outputs"]["transcript"]["url"])).json()
    text = " ".join(s["text"] for s in doc["segments"])
    log = [e["message"] for e in record["result_payload"]["log"]]
    return {"wall_s": wall, "rtf": wall / seconds, "wer": sg.wer(reference, text), "loadavg": load,
            "cpu_s": meter.result["server_main_cpu_s"] + meter.result["server_children_cpu_s"],
            "plan": [m for m in log if m.startswith(("Planned", "Grouped", "Transcribed window"))]}


async def bench_server(workers: int, inputs: dict[str, dict[str, Any]], runs: dict[str, int],
                       results: dict[str, Any]) -> None:
    with ServerProcess(dask_workers=workers) as server:
        print(f"[bench] server with {workers} worker(s) ready in {server.startup_s:.1f}s", flush=True)
        server.add_media(*(i["wav"] for i in inputs.values()))
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            for index, (name, item) in enumerate(inputs.items()):
                entry = results[name]
                for run in range(runs[name] + (1 if index == 0 else 0)):
                    job = await run_job(client, server, item["wav"].name, item["text"], item["seconds"])
                    if index == 0 and run == 0:  # the server's first job: its workers are fresh
                        entry[f"pipeline_{workers}w_cold"] = job
                        print(f"[bench] {name} cold: {job['wall_s']:.2f}s", flush=True)
                        continue
                    job["worker_peak_rss_mb"] = worker_peaks_mb(server)
                    entry.setdefault(f"pipeline_{workers}w", []).append(job)
                    line = f"[bench] {name} run {run + 1}: pipeline {workers}w {job['wall_s']:.2f}s"
                    if workers == max(results["args"]["workers"]):  # interleave the others with the first server
                        for kind in results["args"]["contenders"]:
                            other = run_child(kind, item["wav"], item["text"], item["seconds"])
                            entry.setdefault(kind, []).append(other)
                            line += f", {kind} {other['wall_s']:.2f}s"
                    print(line + f" (load {job['loadavg']:.1f})", flush=True)


# -- report -----------------------------------------------------------------------------------
def report(results: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, item in inputs.items():
        rows, entry = [], results[name]
        plain = statistics.median(r["wall_s"] for r in entry["plain"]) if "plain" in entry else float("nan")
        for key in sorted(k for k in entry if isinstance(entry[k], list)):
            runs = entry[key]
            wall = statistics.median(r["wall_s"] for r in runs)
            peak = max(max(r.get("worker_peak_rss_mb") or [r.get("peak_rss_mb", 0.0)]) for r in runs)
            row = {"wall_s": wall, "rtf": wall / item["seconds"], "wer": statistics.median(r["wer"] for r in runs),
                   "cpu_s": statistics.median(r["cpu_s"] for r in runs), "peak_rss_mb": peak, "vs_plain": wall / plain}
            summary[f"{name}/{key}"] = row
            rows.append([key, len(runs), wall, row["rtf"], row["wer"] * 100, row["cpu_s"], peak, row["vs_plain"]])
        cold = {k: v["wall_s"] for k, v in entry.items() if k.endswith("_cold")}
        print(f"\n{name}: {item['seconds']:.1f} s, {item['words']} words" + (f"; cold {cold}" if cold else ""))
        print_table(rows, ["contender", "runs", "wall s", "RTF", "WER %", "CPU s", "peak RSS MB", "x plain"])
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per contender on the short inputs")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="Dask worker counts to measure")
    parser.add_argument("--long-minutes", type=float, default=60.0 if os.environ.get("BENCH_LONG") == "1" else 20.0)
    parser.add_argument("--contenders", nargs="*", default=list(_CONTENDERS), choices=_CONTENDERS,
                        help="faster-whisper contenders run next to the pipeline (default: both)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "WAV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if not sg.have_espeak():
        print(sg.ESPEAK_MISSING, file=sys.stderr)
        return 1
    t_all = time.perf_counter()
    results: dict[str, Any] = {"benchmark": "transcribe", "machine": machine_info(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        inputs: dict[str, dict[str, Any]] = {}
        for name, make in (("dense", dense), ("sparse", sparse), ("long", lambda: long_form(args.long_minutes))):
            audio, text = make()
            wav = sg.write_wav(Path(tmp) / f"{name}.wav", audio)
            inputs[name] = {"wav": wav, "text": text, "seconds": audio.size / sg.RATE, "words": len(sg.normalize(text))}
            results[name] = {"seconds": audio.size / sg.RATE, "words": inputs[name]["words"]}
        runs = {"dense": args.runs, "sparse": args.runs, "long": 1}
        for workers in sorted(args.workers, reverse=True):
            asyncio.run(bench_server(workers, inputs, runs, results))
        results["summary"] = report(results, inputs)
    results["wall_s"] = time.perf_counter() - t_all
    path = write_json("transcribe.json", results)
    warn_if_loaded(r["loadavg"] for name in ("dense", "sparse", "long") for k, v in results[name].items()
                   if isinstance(v, list) for r in v)
    print(f"\ntotal {results['wall_s']:.1f}s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
