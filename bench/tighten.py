"""tighten benchmark: a dry run on a 10-minute talk, and filler recall and precision on espeak talks.

Run: ``.venv/bin/python bench/tighten.py [--minutes 10] [--parts dry,fillers]``

1. **Dry run** (``dry``): what a ``tighten`` job with a transcript and ``render: false`` computes, in this
   process, on a synthetic ``--minutes`` talk: words are voiced bursts (a 110-220 Hz harmonic tone, 0.12-0.5 s,
   2.6 words/s, a 0.03-0.12 s gap inside sentences, 0.2-1.6 s between them) with room tone under everything,
   a hum filler every ~15 s (one in three also written in the transcript as "um"), and a transcript whose
   word times are off by up to 40 ms. Timed: reading the 16 kHz WAV, the plan (envelope, silences, fillers,
   removals, frames, crossfades), the new timeline, and the diff of a ``keep_text`` that deletes every tenth
   sentence (checked at POST, then cut). Median of 3 after a warm-up. Goal: under 2 s.
2. **Fillers** (``fillers``): three espeak talks (the test talk, and two more with other sentences and
   fillers: um, uh, hmm, erm, mm), transcribed with the graph's steps (Silero VAD, windows, tiny.en with the
   verbatim prompt, merge), then planned with ``fillers: true`` and ``silences: null``. Recall: spoken fillers
   cut (80 % of their sound inside a cut); precision: filler cuts that lie on a spoken filler; and whether
   any real word was cut.

Output: bench/out/tighten.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AVE_CORES_PER_TASK", "2")
from common import machine_info, print_table, write_json  # noqa: E402

from operators.context import OpContext  # noqa: E402
from operators.speech.models import Transcript, TranscriptSegment, Word  # noqa: E402
from operators.storage import Storage  # noqa: E402
from operators.tighten.build import tightened_timeline  # noqa: E402
from operators.tighten.models import FillerWords, SilenceSettings, TightenSource  # noqa: E402
from operators.tighten.plan import make_plan, read_samples  # noqa: E402
from operators.tighten.request import deleted_words  # noqa: E402
from operators.types import SourceRef  # noqa: E402
from tests import speechgen as sg  # noqa: E402
from tests import tightengen as tg  # noqa: E402

RATE = 16000
VOCAB = ("the price of bread went up again this year so we baked our own loaf at home with flour water salt "
         "and yeast it rose slowly in the warm kitchen before we put it in a hot oven").split()


def synthetic_talk(minutes: float, seed: int = 7) -> tuple[np.ndarray, list[Word], int]:
    """Samples, transcript words and the number of fillers of a synthetic talk (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * RATE)
    audio = rng.normal(0, 0.002, total).astype(np.float32)
    words: list[Word] = []
    t, fillers, next_filler = 0.6, 0, 15.0
    while t < minutes * 60 - 6:
        for k in range(int(rng.integers(6, 16))):
            d = float(rng.uniform(0.12, 0.5))
            _tone(audio, t, d, float(rng.uniform(110, 220)), 0.2)
            text = VOCAB[int(rng.integers(len(VOCAB)))]
            jitter = rng.uniform(-0.04, 0.04, 2)
            words.append(Word(word=" " + text, start=round(max(0.0, t + jitter[0]), 3),
                              end=round(t + d + jitter[1], 3), probability=0.9))
            t += d + float(rng.uniform(0.03, 0.12))
        words[-1] = words[-1].model_copy(update={"word": words[-1].word + "."})
        t += float(rng.uniform(0.2, 1.6))
        if t > next_filler:
            d = float(rng.uniform(0.25, 0.5))
            _tone(audio, t, d, 130.0, 0.15)
            if fillers % 3 == 0:
                words.append(Word(word=" um,", start=round(t, 3), end=round(t + d, 3), probability=0.6))
            fillers += 1
            t += d + float(rng.uniform(0.2, 0.5))
            next_filler = t + 15.0
    return audio, words, fillers


def _tone(audio: np.ndarray, t: float, d: float, f0: float, level: float) -> None:
    n = int(d * RATE)
    i = int(t * RATE)
    x = np.arange(n) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * h * x) / h for h in (1, 2, 3, 4))
    audio[i:i + n] += (level * np.hanning(n) ** 0.3 * wave / 2).astype(np.float32)


def dry_run(minutes: float) -> dict[str, Any]:
    audio, words, fillers = synthetic_talk(minutes)
    transcript = Transcript(language="en", duration=audio.size / RATE,
                            segments=(TranscriptSegment(start=words[0].start, end=words[-1].end, text="",
                                                        words=tuple(words)),))
    sentences = " ".join(w.word for w in words).split(".")
    edited = ".".join(s for i, s in enumerate(sentences) if i % 10 != 5)
    with tempfile.TemporaryDirectory() as tmp:
        sg.write_wav(Path(tmp) / "talk.wav", audio)
        ctx = OpContext(job_id="bench", node="plan", storage=Storage(tmp))
        from operators.media.probe import probe

        tg.indexed_talk_video(Path(tmp) / "talk.mp4", audio[:RATE])  # its picture's size and rate
        info = probe(SourceRef(path="talk.mp4"), ctx=ctx)
        source = TightenSource(source=SourceRef(path="talk.mp4", asset_id="asset_bench"), info=info,
                               fps="25", ranges=((0.0, audio.size / RATE),))
        times: list[dict[str, float]] = []
        for _ in range(4):
            t0 = time.perf_counter()
            samples = read_samples(ctx, SourceRef(path="talk.wav"))
            t1 = time.perf_counter()
            removed, added = deleted_words(transcript.words, edited)
            t2 = time.perf_counter()
            plan = make_plan(source, samples, transcript.words, fillers=FillerWords(True),
                             silences=SilenceSettings(preset="fast"), removed=removed)
            t3 = time.perf_counter()
            timeline = tightened_timeline(plan, source, "asset_transcript", "none")
            t4 = time.perf_counter()
            times.append({"read_wav": t1 - t0, "keep_text_diff": t2 - t1, "plan": t3 - t2, "timeline": t4 - t3,
                          "total": t4 - t0})
    median = {k: round(statistics.median(t[k] for t in times[1:]), 3) for k in times[0]}
    cut = [c for c in plan.cuts if not c.kept]
    return {"minutes": minutes, "words": len(words), "removed_by_keep_text": len(removed), "added": len(added),
            "fillers_in_audio": fillers, "fillers_found": len(plan.fillers), "ranges_cut": len(cut),
            "clips": len(timeline["tracks"][0]["clips"]), "seconds_saved": plan.seconds_saved, "seconds": median}


TALKS: dict[str, tuple[str | float, ...]] = {
    "test": tg.LAYOUT,
    "second": (0.4, sg.SENTENCES[10], 0.3, "erm", 0.3, sg.SENTENCES[17], 0.6, sg.SENTENCES[18], 0.25, "um", 0.35,
               sg.SENTENCES[4], 0.3, "mm", 0.3, sg.SENTENCES[5], 0.7),
    "third": (0.5, sg.SENTENCES[9], 0.35, "uh", 0.3, "um", 0.3, sg.SENTENCES[7], 0.25, "hmm", 0.3, sg.SENTENCES[2],
              0.9, sg.SENTENCES[11], 0.3, "uh", 0.3, sg.SENTENCES[15], 0.6),
}
FILLER_WORDS = {"um", "uh", "hmm", "erm", "mm"}
PROMPT = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."  # graphs/tighten.yaml's


def transcribed(tmp: Path, audio: np.ndarray) -> list[Word]:
    """The graph's transcription steps, in this process (one task)."""
    from operators.speech.merge import MergeParams, merge
    from operators.speech.vad import VadParams, vad
    from operators.speech.whisper import WhisperParams, transcribe_windows
    from operators.speech.windows import GroupParams, WindowParams, group_windows, plan_windows

    sg.write_wav(tmp / "talk.wav", audio)
    ctx = OpContext(job_id="bench", node="transcribe", storage=Storage(str(tmp)))
    source = SourceRef(path="talk.wav")
    speech = vad(source, params=VadParams(), ctx=ctx)
    windows = plan_windows(speech, params=WindowParams(pack="speech", max_seconds=28, balance=True), ctx=ctx)
    params = WhisperParams(gaps="skip", initial_prompt=PROMPT)
    parts = [transcribe_windows(source, g, params=params, ctx=ctx)
             for g in group_windows(windows, params=GroupParams(tasks=1), ctx=ctx)]
    return merge(parts, speech, params=MergeParams(), ctx=ctx).words


def filler_scores() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, layout in TALKS.items():
        composed = sg.compose(list(layout))
        audio = composed.audio + np.random.default_rng(22).normal(0, tg.NOISE, composed.audio.size).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            words = transcribed(Path(tmp), audio)
        source = TightenSource.model_construct(source=SourceRef(path="x", asset_id="a"), info=None, fps="25",
                                               ranges=((0.0, composed.duration),), clips=(), timeline=None)
        plan = make_plan(source, audio, words, fillers=FillerWords(True), silences=None, removed=[])
        cuts = [(c.start, c.end) for c in plan.cuts if not c.kept]
        spoken = [u for u in composed.utterances if u.text in FILLER_WORDS]
        sentences = [u for u in composed.utterances if u.text not in FILLER_WORDS]
        within = lambda a, b: sum(max(0.0, min(b, e) - max(a, s)) for s, e in cuts)  # noqa: E731
        hit = sum(within(u.start, u.end) >= 0.8 * (u.end - u.start) for u in spoken)
        on_filler = sum(any(min(e, u.end) - max(s, u.start) > 0 for u in spoken) for s, e in cuts)
        rows[name] = {"spoken": len(spoken), "cut": hit, "filler_cuts": len(cuts), "on_a_filler": on_filler,
                      "words_cut": sum(within(u.start, u.end) > 1e-3 for u in sentences),
                      "found_in_words": sum(f.found_in == "words" for f in plan.fillers),
                      "found_in_audio": sum(f.found_in == "audio" for f in plan.fillers),
                      "transcript_fillers": sum(w.word.strip(" ,.").lower().startswith(("um", "uh", "hm", "er", "mm"))
                                                for w in words)}
    spoken = sum(r["spoken"] for r in rows.values())
    cuts = sum(r["filler_cuts"] for r in rows.values())
    return {"talks": rows, "recall": round(sum(r["cut"] for r in rows.values()) / spoken, 3),
            "precision": round(sum(r["on_a_filler"] for r in rows.values()) / max(1, cuts), 3),
            "sentences_clipped": sum(r["words_cut"] for r in rows.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--parts", default="dry,fillers")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"machine": machine_info()}
    if "dry" in parts:
        dry = result["dry_run"] = dry_run(args.minutes)
        print_table([[k, f"{v:.3f}"] for k, v in dry["seconds"].items()], ["dry run step", "seconds (median)"])
        print({k: v for k, v in dry.items() if k != "seconds"})
    if "fillers" in parts:
        fillers = result["fillers"] = filler_scores()
        print_table([[n, r["spoken"], r["cut"], r["filler_cuts"], r["on_a_filler"], r["words_cut"],
                      r["found_in_words"], r["found_in_audio"]] for n, r in fillers["talks"].items()],
                    ["talk", "spoken", "cut", "filler cuts", "on a filler", "sentences cut", "in words", "in audio"])
        print(f"recall {fillers['recall']:.2f}, precision {fillers['precision']:.2f}, "
              f"sentences clipped {fillers['sentences_clipped']}")
    write_json("tighten", result)


if __name__ == "__main__":
    main()
