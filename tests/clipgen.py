"""Test material for generate_clip: a multi-topic espeak talk, its exact transcript, face videos.

- :func:`topic_talk`: four paragraphs on clearly different subjects (pricing, bread, the
  planets, gardening), spoken by espeak-ng with known silences, so a test knows each topic's
  span and where every sentence starts and ends.
- :func:`exact_transcript`: the transcript of such a layout as a transcribe job would write it,
  with the sentence times exact (words spread over each sentence by length): the clip finder's
  tests then do not depend on the recogniser.
- :func:`draw_face`: a drawn face that OpenCV's Haar frontal-face cascade finds (checked by the
  tests), since no real face picture ships in any installed package.
- :func:`face_video`: shots of a 16:9 video, each with its own background and a face placed
  where the test says (or none), and the face's box in every frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from operators.speech.models import Transcript, TranscriptSegment, Word
from tests import speechgen as sg

TOPICS: dict[str, tuple[str, ...]] = {
    "pricing": (
        "Let's talk about pricing.",
        "How much should you charge for your software?",
        "Most founders set their price far too low.",
        "A higher price tells customers that the product is worth it.",
        "Raise your subscription price once a year and watch your revenue grow.",
    ),
    "bread": (
        "Now, baking bread at home.",
        "Flour, water, salt and yeast are all you need.",
        "Knead the dough for ten minutes until it feels smooth.",
        "Let it rise in a warm kitchen for two hours.",
        "Bake the loaf in a hot oven until the crust turns golden.",
    ),
    "planets": (
        "Next, the night sky.",
        "Jupiter is the largest planet in our solar system.",
        "Its great red spot is a storm bigger than the Earth.",
        "On a clear night you can see its four bright moons with binoculars.",
        "Astronomers discovered them more than four hundred years ago.",
    ),
    "garden": (
        "Finally, gardening.",
        "Tomatoes need six hours of sunlight every day.",
        "Water the plants deeply in the morning, not at night.",
        "Pull the weeds before they flower and spread their seeds.",
        "A layer of mulch keeps the soil cool and moist.",
    ),
}


@dataclass(frozen=True)
class Talk:
    composed: sg.Composed
    #: Each topic's span: its first sentence's start to its last sentence's end.
    spans: dict[str, tuple[float, float]]

    @property
    def utterances(self) -> tuple[sg.Utterance, ...]:
        return self.composed.utterances


@functools.lru_cache(maxsize=4)
def topic_talk(topics: tuple[str, ...] = tuple(TOPICS), gap: float = 0.6, topic_gap: float = 1.5) -> Talk:
    parts: list[str | float] = [0.7]
    for name in topics:
        for sentence in TOPICS[name]:
            parts += [sentence, gap]
        parts[-1] = topic_gap
    composed = sg.compose(parts)
    spans, i = {}, 0
    for name in topics:
        n = len(TOPICS[name])
        spans[name] = (composed.utterances[i].start, composed.utterances[i + n - 1].end)
        i += n
    return Talk(composed, spans)


def exact_transcript(composed: sg.Composed) -> Transcript:
    """One segment per sentence, at its exact time; words spread over it by their length."""
    segments = []
    for u in composed.utterances:
        tokens = u.text.split()
        total = sum(len(t) for t in tokens)
        t, words = u.start, []
        for token in tokens:
            d = (u.end - u.start) * len(token) / total
            words.append(Word(word=" " + token, start=round(t, 3), end=round(t + d, 3), probability=0.9))
            t += d
        segments.append(TranscriptSegment(start=words[0].start, end=words[-1].end, text=u.text, words=tuple(words)))
    return Transcript(language="en", duration=round(composed.duration, 3), segments=tuple(segments))


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


# -- faces ----------------------------------------------------------------------------------
def draw_face(size: int) -> np.ndarray:
    """An RGB ``size`` x ``size`` drawing of a face: skin oval, hair, brows, eyes, nose, mouth."""
    import cv2

    s = size / 200
    img = np.full((size, size, 3), 90, np.uint8)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(x * s), int(y * s)

    cv2.ellipse(img, p(100, 105), p(70, 92), 0, 0, 360, (220, 180, 150), -1)
    cv2.ellipse(img, p(100, 38), p(72, 35), 0, 180, 360, (40, 30, 30), -1)
    for dx in (-32, 32):
        cv2.ellipse(img, p(100 + dx, 72), p(18, 5), 0, 0, 360, (50, 40, 40), -1)
        cv2.ellipse(img, p(100 + dx, 88), p(14, 8), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, p(100 + dx, 88), int(6 * s), (20, 30, 40), -1)
    cv2.line(img, p(100, 95), p(94, 128), (180, 140, 110), max(1, int(4 * s)))
    cv2.ellipse(img, p(100, 132), p(12, 5), 0, 0, 180, (160, 120, 100), -1)
    cv2.ellipse(img, p(100, 155), p(24, 8), 0, 0, 360, (150, 60, 60), -1)
    return cv2.GaussianBlur(img, (0, 0), 2 * s)


@dataclass(frozen=True)
class Shot:
    seconds: float
    #: The face's centre x (fraction of the width), or None for a shot without a face.
    face_x: float | None
    background: tuple[int, int, int]
    #: How far the face drifts right over the shot (fraction of the width).
    drift: float = 0.0


@dataclass(frozen=True)
class FaceVideo:
    path: Path
    size: tuple[int, int]
    fps: int
    #: Per frame: (time, face box as fractions x, y, w, h, or None).
    faces: tuple[tuple[float, tuple[float, float, float, float] | None], ...]
    cuts: tuple[float, ...]


def _background(rgb: tuple[int, int, int], size: tuple[int, int], seed: int) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    base = np.empty((h, w, 3), np.float32)
    base[:] = rgb
    ramp = np.linspace(-25, 25, w, dtype=np.float32)[None, :, None]
    texture = rng.normal(0, 6, (h // 8 + 1, w // 8 + 1, 1)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(base + ramp + texture, 0, 255).astype(np.uint8)


def face_video(path: str | Path, shots: list[Shot], *, size: tuple[int, int] = (640, 360), fps: int = 10,
               face_height: float = 0.36, audio: np.ndarray | None = None) -> FaceVideo:
    """An H.264 MP4 of the ``shots`` (and the 16 kHz ``audio`` as AAC, if given)."""
    path = Path(path)
    w, h = size
    side = int(round(face_height * h)) // 2 * 2
    face = draw_face(side)
    faces, cuts, t0 = [], [], 0.0
    seconds = sum(s.seconds for s in shots)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "g": str(fps * 2), "threads": "1"}
        astream = out.add_stream("aac", rate=48000, layout="mono") if audio is not None else None
        frame_index = 0
        for n, shot in enumerate(shots):
            if n:
                cuts.append(round(t0, 3))
            background = _background(shot.background, size, n)
            count = int(round(shot.seconds * fps))
            for i in range(count):
                img = background.copy()
                box = None
                if shot.face_x is not None:
                    cx = shot.face_x + shot.drift * i / max(1, count - 1)
                    x = int(round(cx * w - side / 2))
                    y = int(round(0.42 * h - side / 2))
                    img[y : y + side, x : x + side] = face
                    box = (x / w, y / h, side / w, side / h)
                faces.append((round(frame_index / fps, 4), box))
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = frame_index
                frame.time_base = Fraction(1, fps)
                out.mux(vs.encode(frame))
                frame_index += 1
            t0 += count / fps
        out.mux(vs.encode(None))
        if astream is not None:
            _mux_audio(out, astream, audio, seconds)
    return FaceVideo(path=path, size=size, fps=fps, faces=tuple(faces), cuts=tuple(cuts))


def _mux_audio(out, stream, audio: np.ndarray, seconds: float, rate: int = 48000) -> None:
    n = int(round(audio.size * rate / sg.RATE))
    up = np.interp(np.arange(n) * sg.RATE / rate, np.arange(audio.size), audio).astype(np.float32)
    up = up[: int(seconds * rate)]
    for i in range(0, up.size, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(up[None, i : i + 1024]), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = i
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
