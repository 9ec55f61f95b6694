"""Speech test material: espeak-ng sentences laid out with known silences, media writers, WER.

The layout is what makes timing assertions possible: each sentence is trimmed of
espeak's own leading/trailing silence and placed at a known sample, so a test knows
when its first word was spoken.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 16000

# Harvard sentences: phonetically balanced, and tiny.en knows every word in them.
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
)

BECKETT_TEXT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


ESPEAK_MISSING = "espeak-ng is not installed (apt-get install espeak-ng, or `make system-deps`)"


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float  # seconds on the composed timeline, first audible sample
    end: float


@dataclass(frozen=True)
class Composed:
    audio: np.ndarray  # float32, 16 kHz mono
    utterances: tuple[Utterance, ...]

    @property
    def duration(self) -> float:
        return self.audio.size / RATE

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)


def decode_16k(path: str | Path) -> np.ndarray:
    """Whole file to 16 kHz mono float32 (independent of the code under test)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frame.pts = None
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=64)
def _espeak_cached(text: str, voice: str, speed: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True)
        audio = decode_16k(out)
    # espeak pads each sentence with silence; trim it so the layout says when speech starts.
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[loud[0] : loud[-1] + 1] if loud.size else audio[:0]
    return audio.astype(np.float32).tobytes()


def espeak(text: str, *, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, 16 kHz mono float32, trimmed of silence at both ends."""
    return np.frombuffer(_espeak_cached(text, voice, speed), dtype=np.float32).copy()


def compose(parts: list[str | float], *, voice: str = "en-us", speed: int = 150) -> Composed:
    """Join sentences (str) and silences (float seconds) into one timeline."""
    chunks: list[np.ndarray] = []
    utterances: list[Utterance] = []
    pos = 0
    for part in parts:
        if isinstance(part, str):
            speech = espeak(part, voice=voice, speed=speed)
            utterances.append(Utterance(part, pos / RATE, (pos + speech.size) / RATE))
            chunks.append(speech)
            pos += speech.size
        else:
            n = int(round(float(part) * RATE))
            chunks.append(np.zeros(n, np.float32))
            pos += n
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return Composed(audio, tuple(utterances))


def compose_sentences(sentences: list[str], gaps: list[float], *, lead: float = 0.7, tail: float = 0.8) -> Composed:
    """Sentences separated by ``gaps`` (cycled), with silence before the first and after the last."""
    parts: list[str | float] = [lead]
    for i, s in enumerate(sentences):
        parts.append(s)
        parts.append(gaps[i % len(gaps)] if i < len(sentences) - 1 else tail)
    return compose(parts)


@functools.lru_cache(maxsize=1)
def minute_of_speech() -> Composed:
    """About 60 s: all 20 sentences with gaps of 0.6–1.5 s."""
    return compose_sentences(list(SENTENCES), [0.6, 1.0, 0.8, 1.5, 0.7])


def write_wav(path: str | Path, audio: np.ndarray, rate: int = RATE) -> Path:
    """Mono 16-bit PCM WAV."""
    path = Path(path)
    pcm = np.clip(np.asarray(audio, np.float32) * 32767.0, -32768, 32767).astype(np.int16)
    with av.open(str(path), mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i in range(0, pcm.size, 4096):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + 4096], format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_video(path: str | Path, seconds: float, audio: np.ndarray | None = None, *, audio_rate: int = 48000) -> Path:
    """A small MP4: grey video frames, and (if given) the 16 kHz audio as 48 kHz stereo AAC."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream("mpeg4", rate=10)
        vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=audio_rate, layout="stereo")
        for i in range(max(1, int(seconds * 10))):
            img = np.full((48, 64, 3), 128, np.uint8)
            vframe = av.VideoFrame.from_ndarray(img, format="rgb24")
            vframe.pts = i
            vframe.time_base = Fraction(1, 10)
            for packet in vstream.encode(vframe):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None and audio is not None:
            # Upsample with numpy (linear) so the file's audio does not depend on the code under test.
            n = int(round(audio.size * audio_rate / RATE))
            up = np.interp(np.arange(n) * RATE / audio_rate, np.arange(audio.size), audio).astype(np.float32)
            stereo = np.vstack([up, up])
            step = 1024
            for i in range(0, n, step):
                block = np.ascontiguousarray(stereo[:, i : i + step])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                frame.sample_rate = audio_rate
                frame.pts = i
                frame.time_base = Fraction(1, audio_rate)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return path


def beckett_path() -> Path:
    """The Beckett recording shipped by useful-moonshine-onnx (found without importing it)."""
    spec = importlib.util.find_spec("moonshine_onnx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("useful-moonshine-onnx is not installed (see Makefile DATA_PACKAGES)")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "beckett.wav"


_NUMBERS = {"4": "four", "50": "fifty"}


def normalize(text: str) -> list[str]:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return [_NUMBERS.get(w, w) for w in (w.strip("'") for w in text.split()) if w]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
