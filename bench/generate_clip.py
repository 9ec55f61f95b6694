"""generate_clip benchmark: clip finding on long transcripts, embedding throughput, and POST -> clips.

Run: ``.venv/bin/python bench/generate_clip.py [--minutes 10,20,30,45,60] [--talk-minutes 10] [--parts find,embed,e2e]``

1. **Finding** (``find``): ``operators.clips.find.find_clips`` in this process on synthetic transcripts of
   ``--minutes`` minutes (sentences drawn from a dozen subjects, 2.6 words/s, 0.25-2 s pauses) with a
   loudness envelope to match: sentences, embeddings, TextTiling, candidates, scores, NMS, reasons, titles.
   No transcription, no media. Each length is run twice with a warm session (the median kept), after one
   cold call that loads the model (timed apart). The target: an hour in under 5 s on 2 cores.
2. **Embedding throughput** (``embed``): sentences/s of the finder's embedder (length-sorted batches of 32,
   padded to the batch's longest, masked mean pooling, L2) against a plain onnxruntime loop over the same
   model file and tokenizer: one ``session.run`` per sentence, as the tokenizer ships (padded to 128), and
   the same loop without the padding. Same sentences, same session options (2 intra-op threads); three
   rounds on fresh sentences, the contenders interleaved within each round so they share the machine's load.
3. **End to end** (``e2e``): a ``--talk-minutes`` espeak talk (the Harvard sentences and the test topics,
   over a 320x180 10 fps video with a drawn face) uploaded to a server (``python -m server``, 2 Dask
   workers), ``POST /jobs/?job_type=generate_clip`` with transcription in the graph, polled until completed;
   then again with that job's transcript as ``transcript_asset_id`` (no transcription). Wall seconds from
   POST to completed, and where the time went (node done lines of the job's log).

Output: bench/out/generate_clip.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AVE_CORES_PER_TASK", "2")  # this process has the machine's 2 cores to itself
from common import (  # noqa: E402
    ServerProcess,
    machine_info,
    parse_ts,
    print_table,
    submit,
    wait_job,
    warn_if_loaded,
    write_json,
)

from operators.clips.text.embeddings import MAX_TOKENS, Embedder, get_embedder, model_files  # noqa: E402
from operators.clips.find import FindParams, find_clips  # noqa: E402
from operators.clips.models import Loudness  # noqa: E402
from operators.speech.models import Transcript, TranscriptSegment, Word  # noqa: E402

SUBJECTS = {
    "pricing": ("price", "customer", "subscription", "revenue", "discount", "plan", "invoice", "margin", "buyer"),
    "hiring": ("engineer", "interview", "candidate", "team", "offer", "salary", "manager", "role", "recruiter"),
    "cooking": ("dough", "oven", "flour", "sauce", "recipe", "kitchen", "onion", "butter", "pan"),
    "space": ("planet", "telescope", "orbit", "moon", "star", "rocket", "galaxy", "comet", "astronaut"),
    "garden": ("tomato", "soil", "seed", "weed", "mulch", "rain", "root", "flower", "compost"),
    "football": ("goal", "striker", "coach", "match", "pitch", "referee", "season", "keeper", "league"),
    "health": ("sleep", "doctor", "exercise", "heart", "diet", "muscle", "stress", "vitamin", "walk"),
    "music": ("guitar", "song", "chord", "drummer", "album", "melody", "studio", "singer", "tour"),
    "travel": ("flight", "hotel", "passport", "train", "beach", "museum", "ticket", "island", "map"),
    "money": ("savings", "bank", "loan", "interest", "budget", "stock", "pension", "debt", "fund"),
    "climate": ("carbon", "forest", "ocean", "heat", "glacier", "solar", "wind", "storm", "emission"),
    "coding": ("bug", "server", "database", "compiler", "test", "function", "deploy", "cache", "query"),
}
VERBS = ("changes", "needs", "beats", "follows", "helps", "breaks", "shapes", "drives", "saves", "costs")
OPENERS = ("The", "Every", "Our", "A good", "Your", "That", "One", "This")
TAILS = ("every single day", "in the long run", "more than you think", "at the very start", "for most people",
         "by a wide margin", "when it matters", "without any doubt", "in twenty minutes", "twice a year")


def synthetic_talk(minutes: float, seed: int = 0) -> tuple[Transcript, Loudness]:
    """A transcript of ``minutes`` minutes on changing subjects, and a loudness envelope to match."""
    rng = random.Random(seed)
    hop, total = 0.05, minutes * 60
    db = np.full(int(total / hop) + 1, -70.0)
    segments, t = [], 0.8
    subjects = list(SUBJECTS)
    while t < total - 10:
        subject = SUBJECTS[rng.choice(subjects)]
        for _ in range(rng.randint(25, 70)):
            a, b = rng.sample(subject, 2)
            kind = rng.random()
            if kind < 0.12:
                text = f"Why does the {a} matter so much for the {b}?"
            elif kind < 0.25:
                text = (f"{rng.choice(OPENERS)} {a} {rng.choice(VERBS)} the {b} {rng.choice(TAILS)}, "
                        f"and the {rng.choice(subject)} knows it.")
            else:
                text = f"{rng.choice(OPENERS)} {a} {rng.choice(VERBS)} the {b} {rng.choice(TAILS)}."
            words = []
            for token in text.split():
                d = 0.12 + 0.045 * len(token)
                words.append(Word(word=" " + token, start=round(t, 3), end=round(t + d, 3), probability=0.9))
                level = rng.gauss(-22, 4)
                db[int(t / hop) : int((t + d) / hop) + 1] = level
                t += d + 0.04
            segments.append(TranscriptSegment(start=words[0].start, end=words[-1].end, text=text, words=tuple(words)))
            t += rng.choice((0.25, 0.4, 0.6, 0.8, 1.2, 2.0))
            if t >= total - 10:
                break
    return (Transcript(language="en", duration=round(total, 3), segments=tuple(segments)),
            Loudness(hop=hop, db=tuple(float(round(v, 2)) for v in db)))


def bench_find(minutes: list[float]) -> dict[str, Any]:
    params = FindParams()  # the job's defaults: 15-60 s, 10 clips, no prompt
    get_embedder.cache_clear()
    transcript, loud = synthetic_talk(minutes[0])
    t0 = time.perf_counter()
    find_clips(transcript, loud, params)
    cold = time.perf_counter() - t0
    rows = []
    for m in minutes:
        transcript, loud = synthetic_talk(m, seed=int(m))
        lines: list[str] = []
        walls, cpus = [], []
        for prompt in ("", "the part about pricing"):
            for _ in range(2):
                c0, w0 = time.process_time(), time.perf_counter()
                clips = find_clips(transcript, loud, params.model_copy(update={"prompt": prompt}), lines.append)
                walls.append((prompt, time.perf_counter() - w0))
                cpus.append(time.process_time() - c0)
        plain = [w for p, w in walls if not p]
        prompted = [w for p, w in walls if p]
        summary = lines[-1]
        rows.append({"minutes": m, "sentences": int(summary.split(" sentences")[0].split()[-1]),
                     "candidates": int(summary.split(" candidates")[0].split()[-1]),
                     "wall_s": statistics.median(plain), "wall_prompt_s": statistics.median(prompted),
                     "cpu_s": statistics.median(cpus), "clips": len(clips)})
        print(f"  {m:g} min: {rows[-1]['wall_s']:.2f} s ({rows[-1]['sentences']} sentences, "
              f"{rows[-1]['candidates']} candidates)", flush=True)
    return {"cold_first_call_s": cold, "rows": rows}


def bench_embed(rounds: int = 3, per_round: int = 330, padded_per_round: int = 100) -> dict[str, Any]:
    """Sentences/s of each embedder, interleaved round by round on fresh sentences (same load for all)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    ours = Embedder(threads=2)
    ours.embed(["warm up"])
    model, tokenizer_path = model_files()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    shipped = Tokenizer.from_file(str(tokenizer_path))  # as shipped: padded to 128, truncated at 128
    unpadded = Tokenizer.from_file(str(tokenizer_path))
    unpadded.no_padding()
    unpadded.enable_truncation(MAX_TOKENS)

    def plain_loop(tok: Any, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            enc = tok.encode(text)
            ids = np.array([enc.ids], np.int64)
            mask = np.array([enc.attention_mask], np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, feeds)[0]
            v = ((hidden * mask[..., None]).sum(1) / mask.sum())[0]
            out.append(v / np.linalg.norm(v))
        return np.asarray(out)

    totals = {name: [0, 0.0] for name in ("ours_batched", "plain_loop_unpadded", "plain_loop_padded_128")}
    agree, words = 1.0, []
    for r in range(rounds):
        transcript, _ = synthetic_talk(25, seed=100 + r)  # fresh sentences every round
        texts = [s.text for s in transcript.segments][:per_round]
        words += [len(t.split()) for t in texts]
        contenders = (("ours_batched", ours.embed, texts),
                      ("plain_loop_unpadded", lambda t: plain_loop(unpadded, t), texts),
                      ("plain_loop_padded_128", lambda t: plain_loop(shipped, t), texts[:padded_per_round]))
        for name, run, sample in contenders:
            t0 = time.perf_counter()
            vectors = run(sample)
            totals[name][1] += time.perf_counter() - t0
            totals[name][0] += len(vectors)
            if name == "ours_batched":
                mine = vectors
            else:
                agree = min(agree, float(np.min(np.sum(vectors * mine[: len(vectors)], axis=1))))
    results: dict[str, Any] = {name: {"sentences": n, "seconds": sec, "per_s": n / sec}
                               for name, (n, sec) in totals.items()}
    results["ours_batched"]["batch_size"] = ours.batch_size
    results["min_cosine_plain_vs_ours"] = agree
    results["mean_words"] = statistics.fmean(words)
    return results


def talk_video(minutes: float, folder: Path) -> tuple[Path, float]:
    from tests import clipgen as cg
    from tests import speechgen as sg

    pool = list(sg.SENTENCES) + [s for sents in cg.TOPICS.values() for s in sents]
    length = {text: sg.espeak(text).size / sg.RATE for text in pool}
    rng = random.Random(1)
    parts: list[str | float] = [0.7]
    seconds = 0.7
    while seconds < minutes * 60 - 3:
        sentence, gap = rng.choice(pool), rng.choice((0.5, 0.7, 0.9, 1.4))
        parts += [sentence, gap]
        seconds += length[sentence] + gap
    layout = sg.compose(parts)
    quarter = layout.duration / 4
    shots = [cg.Shot(round(quarter, 1), x, bg) for x, bg in ((0.25, (60, 90, 140)), (0.7, (170, 150, 110)),
                                                             (None, (100, 160, 100)), (0.5, (120, 120, 160)))]
    made = cg.face_video(folder / "talk.mp4", shots, size=(320, 180), audio=layout.audio)
    return made.path, layout.duration


def node_times(record: dict[str, Any]) -> dict[str, float]:
    """Seconds from the job's start to each node's 'done' line."""
    start = parse_ts(record.get("started_at")) or 0.0
    out = {}
    for entry in record["result_payload"]["log"]:
        message = entry["message"]
        if message.endswith(" done") and " " not in message[:-5]:
            out[message[:-5]] = round((parse_ts(entry["timestamp"]) or start) - start, 2)
    return out


async def bench_e2e(minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        t0 = time.perf_counter()
        video, duration = talk_video(minutes, Path(tmp))
        made_s = time.perf_counter() - t0
        print(f"  made a {duration / 60:.1f} min talk in {made_s:.0f} s", flush=True)
        with ServerProcess(dask_workers=2) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
                asset = (await client.post("/assets/?project_id=bench&filename=talk.mp4",
                                           content=video.read_bytes())).json()["id"]
                runs = {}
                payload = {"project_id": "bench", "source_asset_id": asset}
                for name, extra in (("transcribed", {}), ("transcript_given", None)):
                    if extra is None:
                        extra = {"transcript_asset_id": runs["transcribed"]["transcript_id"]}
                    w0 = time.perf_counter()
                    job = await submit(client, "generate_clip", {**payload, **extra})
                    record = await wait_job(client, job["id"], interval=0.1, timeout=1800)
                    wall = time.perf_counter() - w0
                    if record["status"] != "completed":
                        raise RuntimeError(f"generate_clip {name}: {record['status']}: {record['error_message']}")
                    outputs = record["result_payload"]["outputs"]
                    runs[name] = {"wall_s": wall, "realtime_factor": wall / duration, "clips": len(outputs["clips"]),
                                  "top_score": outputs["clips"][0]["score"] if outputs["clips"] else None,
                                  "transcript_id": outputs["transcript"]["id"], "nodes_done_at_s": node_times(record)}
                    print(f"  {name}: {wall:.1f} s for {duration / 60:.1f} min", flush=True)
        return {"talk_seconds": duration, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="10,20,30,45,60")
    parser.add_argument("--talk-minutes", type=float, default=10)
    parser.add_argument("--parts", default="find,embed,e2e", help="which parts to run (comma-separated)")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(",")) - ({"e2e"} if args.skip_e2e else set())
    loads = [os.getloadavg()[0]]
    results: dict[str, Any] = {"machine": machine_info()}
    if "find" in parts:
        print("find (in process, no transcription):", flush=True)
        results["find"] = bench_find([float(m) for m in args.minutes.split(",")])
        loads.append(os.getloadavg()[0])
    if "embed" in parts:
        print("embedding throughput:", flush=True)
        results["embed"] = bench_embed()
        loads.append(os.getloadavg()[0])
    if "e2e" in parts:
        print("end to end (server, 2 workers):", flush=True)
        results["e2e"] = asyncio.run(bench_e2e(args.talk_minutes))
        loads.append(os.getloadavg()[0])
    results["loadavg"] = loads

    print()
    if "find" in results:
        print_table([[r["minutes"], r["sentences"], r["candidates"], r["wall_s"], r["wall_prompt_s"], r["cpu_s"]]
                     for r in results["find"]["rows"]],
                    ["minutes", "sentences", "candidates", "wall s", "wall s (prompt)", "cpu s"])
        print(f"(first call in a process, loading the model: {results['find']['cold_first_call_s']:.2f} s)\n")
    if "embed" in results:
        print_table([[k, v["sentences"], v["per_s"]] for k, v in results["embed"].items() if isinstance(v, dict)],
                    ["embedder", "sentences", "sentences/s"])
    if "e2e" in results:
        print()
        print_table([[k, v["wall_s"], v["realtime_factor"], v["clips"]] for k, v in results["e2e"]["runs"].items()],
                    ["generate_clip, 10-min talk", "wall s", "x real time", "clips"])
    warn_if_loaded(loads)
    everything = parts == {"find", "embed", "e2e"}
    name = "generate_clip.json" if everything else f"generate_clip_{'_'.join(sorted(parts))}.json"
    print(f"\nwrote {write_json(name, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
