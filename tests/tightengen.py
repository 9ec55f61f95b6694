"""Test material for tighten: an espeak talk with pauses of known length and fillers spoken in the gaps, over
a video whose frames draw their own index (:func:`tests.mediagen.read_index` reads them back)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests import speechgen as sg
from tests.mediagen import indexed_frame

# Five sentences tiny.en writes down word for word (checked on this layout), and the fillers between them.
A, B, C, D, E, F = ("Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
                    "The boy was there when the sun rose.", "The soft cushion broke the man's fall.",
                    "The salt breeze came across from the sea.", "A large size in stockings is hard to sell.")
FILLERS = ("um", "uh", "hmm")
#: Lead 0.5 s, tail 0.8 s; pauses 1.2 (long), 0.2 (short), 0.45, 0.4 and 0.25 s around the fillers.
LAYOUT: tuple[str | float, ...] = (0.5, A, 1.2, B, 0.25, "um", 0.25, C, 0.2, D, 0.45, "uh", 0.4, "hmm", 0.25, E,
                                   0.25, "um", 0.4, "uh", 0.25, F, 0.8)
FPS = 25
SIZE = (160, 96)
NOISE = 0.002  # room tone: about -54 dBFS of white noise under everything


@dataclass(frozen=True)
class Talk:
    composed: sg.Composed
    audio: np.ndarray  # with room tone

    @property
    def sentences(self) -> list[sg.Utterance]:
        return [u for u in self.composed.utterances if u.text not in FILLERS]

    @property
    def fillers(self) -> list[sg.Utterance]:
        return [u for u in self.composed.utterances if u.text in FILLERS]

    @property
    def script(self) -> str:
        return " ".join(u.text for u in self.sentences)

    def pauses(self) -> list[tuple[float, float]]:
        """Every silence of the layout, lead and tail included, as (start, end) seconds."""
        spans, t, utterances = [], 0.0, iter(self.composed.utterances)
        for part in LAYOUT:
            if isinstance(part, str):
                t = next(utterances).end
            else:
                spans.append((t, t + float(part)))
                t += float(part)
        return spans


@functools.lru_cache(maxsize=1)
def talk() -> Talk:
    composed = sg.compose(list(LAYOUT))
    noise = np.random.default_rng(22).normal(0.0, NOISE, composed.audio.size).astype(np.float32)
    return Talk(composed, composed.audio + noise)


def indexed_talk_video(path: str | Path, audio: np.ndarray) -> Path:
    """An H.264/AAC MP4 at 25 fps whose frame ``i`` shows ``i`` in binary bars, with ``audio`` (16 kHz) as its sound."""
    path = Path(path)
    width, height = SIZE
    frames = int(np.ceil(audio.size / sg.RATE * FPS))
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, FPS)
        vs.options = {"g": "12", "bf": "2", "preset": "ultrafast", "crf": "12", "threads": "1"}
        aus = out.add_stream("aac", rate=48000)
        aus.layout = "stereo"
        for i in range(frames):
            frame = indexed_frame(i, width, height)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        n = int(round(frames / FPS * 48000))
        up = np.interp(np.arange(n) * sg.RATE / 48000, np.arange(audio.size), audio, right=0.0).astype(np.float32)
        for i in range(0, n, 1024):
            block = np.ascontiguousarray(np.vstack([up[i:i + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    return path


def decode_48k(data: bytes, path: Path) -> np.ndarray:
    """A file's sound as 48 kHz mono float32 (independent of the code under test)."""
    path.write_bytes(data)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frame.pts = None
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks)


def decode_gray(data: bytes, path: Path) -> list[np.ndarray]:
    path.write_bytes(data)
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]
