"""Small sources with the properties real footage has and ``mediagen``'s clips do not (issue 19).

A screen recording whose rate switches, an MPEG-TS whose streams start late and apart, interlaced
video whose fields differ, and a file with damaged packets. Each is a few seconds, at most 320x240,
and marks time in sound and picture where sync is the point (a white flash and a beep each second).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

__all__ = ["combing", "damage_mdat", "make_dense_clip", "make_interlaced", "make_ts", "make_vfr_switch", "marker_times",
           "mdat_span"]


def _picture(width: int, height: int, t: float, flash: bool) -> np.ndarray:
    """A grey ramp that moves with ``t`` (so frames differ), white when ``flash``."""
    if flash:
        return np.full((height, width, 3), 255, np.uint8)
    x = (np.arange(width)[None, :] + int(t * 90)) % 64 * 3
    return np.broadcast_to((x + np.arange(height)[:, None] % 32).astype(np.uint8)[..., None],
                           (height, width, 3)).copy()


def _beeps(seconds: float, rate: int = 48000) -> np.ndarray:
    """Silence with a 50 ms 1 kHz beep at every whole second: the sound's sync markers."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return np.where((t % 1.0) < 0.05, tone, 0.0).astype(np.float32)


def _mux_audio(out: Any, stream: Any, samples: np.ndarray, rate: int, start: int = 0) -> None:
    for first in range(0, samples.size, 1024):
        block = samples[first:first + 1024]
        frame = av.AudioFrame.from_ndarray(np.stack([block, block]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start + first, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_vfr_switch(path: str | Path, segments: tuple[tuple[int, float], ...] = ((30, 1.0), (60, 1.0), (10, 1.0)),
                    size: tuple[int, int] = (160, 120)) -> Path:
    """A screen recording whose rate switches (30 → 60 → 10 fps by default), with explicit pts.

    The frame at each whole second is white and the sound beeps there, so sync is visible.
    """
    path = Path(path)
    width, height = size
    tb = Fraction(1, 90000)
    total = sum(s for _, s in segments)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = tb
        vs.options = {"g": "30", "bf": "0", "preset": "ultrafast", "threads": "1"}
        aus = out.add_stream("aac", rate=48000)
        aus.layout = "stereo"
        t0 = Fraction(0)
        for fps, seconds in segments:
            for i in range(round(fps * seconds)):
                t = t0 + Fraction(i, fps)
                frame = av.VideoFrame.from_ndarray(_picture(width, height, float(t), t.denominator == 1),
                                                   format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = int(t / tb), tb
                out.mux(vs.encode(frame))
            t0 += Fraction(seconds).limit_denominator(1000)
        out.mux(vs.encode(None))
        _mux_audio(out, aus, _beeps(total), 48000)
    return path


def make_ts(path: str | Path, seconds: float = 3.0, start: float = 1.4, audio_lead: float = 0.04, gop: int = 30,
            size: tuple[int, int] = (160, 120), fps: int = 25) -> Path:
    """H.264 + AAC in MPEG-TS whose video starts at ``start`` s and audio ``audio_lead`` s earlier.

    Broadcast captures start at 1.4 s or later, and their streams never start together. ``gop``
    longer than the clip gives one keyframe, as many recorders write.
    """
    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2",
                      "preset": "ultrafast", "threads": "1"}
        aus = out.add_stream("aac", rate=48000)
        aus.layout = "stereo"
        first = round(start * fps)
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(_picture(width, height, i / fps, i % fps == 0), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pict_type = av.video.frame.PictureType.NONE
            frame.pts, frame.time_base = first + i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        # The sound starts audio_lead earlier, with its first beep at the first flash.
        lead = round(audio_lead * 48000)
        samples = np.concatenate([np.zeros(lead, np.float32), _beeps(seconds)])
        _mux_audio(out, aus, samples, 48000, start=round(start * 48000) - lead)
    return path


def _fields(width: int, height: int, i: int) -> np.ndarray:
    """Frame ``i`` of vertical stripes moving right, its two fields taken half a frame apart."""
    out = np.empty((height, width), np.uint8)
    x = np.arange(width)
    for parity in (0, 1):
        shift = 4 * (2 * i + parity)  # the bottom field is the later one (top field first)
        out[parity::2] = np.where((x + shift) // 16 % 2 == 0, 200, 40).astype(np.uint8)[None, :]
    return out


def make_interlaced(path: str | Path, frames: int = 50, size: tuple[int, int] = (320, 240), fps: int = 25) -> Path:
    """Top-field-first interlaced H.264 (as 1080i/480i cameras write) of stripes that move between fields."""
    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        vs.options = {"flags": "+ildct+ilme", "x264-params": "interlaced=1:tff=1", "preset": "ultrafast",
                      "crf": "12", "threads": "1", "g": "25"}
        for i in range(frames):
            yuv = np.full((height * 3 // 2, width), 128, np.uint8)
            yuv[:height] = _fields(width, height, i)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def combing(gray: np.ndarray) -> float:
    """Interlacing combs: the energy of adjacent lines' difference over that of lines two apart.

    Near 1 or below for a progressive picture; far above it where the two fields show different times.
    """
    g = gray.astype(np.float64)
    near = np.mean((g[1:] - g[:-1]) ** 2)
    far = np.mean((g[2:] - g[:-2]) ** 2)
    return float(near / (far + 1.0))


def make_dense_clip(path: str | Path, seconds: float = 4.0, size: tuple[int, int] = (320, 240), fps: int = 30,
                    audio: bool = True) -> Path:
    """H.264 (with B-frames) + AAC in MP4 whose frames are big (grain over a moving ramp, ~25 KB each), so
    that 64 KiB of damage hits a few frames of it, as it does in camera footage of any real size."""
    path = Path(path)
    width, height = size
    rng = np.random.default_rng(3)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        vs.options = {"g": "30", "bf": "2", "preset": "ultrafast", "crf": "20", "threads": "1"}
        aus = out.add_stream("aac", rate=48000) if audio else None
        if aus is not None:
            aus.layout = "stereo"
        for i in range(round(seconds * fps)):
            picture = _picture(width, height, i / fps, i % fps == 0).astype(np.int16)
            picture += rng.integers(-24, 24, picture.shape[:2], dtype=np.int16)[..., None]
            frame = av.VideoFrame.from_ndarray(np.clip(picture, 0, 255).astype(np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aus is not None:
            _mux_audio(out, aus, _beeps(seconds), 48000)
    return path


def mdat_span(path: str | Path) -> tuple[int, int]:
    """Where an MP4's media data lies: (offset, size) of the ``mdat`` payload."""
    data = Path(path).read_bytes()
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8:at + 16], "big"), 16
        if kind == b"mdat":
            return at + header, size - header
        at += size
    raise ValueError("no mdat box")


def damage_mdat(path: str | Path, length: int = 64 * 1024, seed: int = 7) -> Path:
    """Overwrite ``length`` bytes in the middle of an MP4's media data with random bytes (the index is kept)."""
    path = Path(path)
    offset, size = mdat_span(path)
    data = bytearray(path.read_bytes())
    at = offset + (size - length) // 2
    data[at:at + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def marker_times(frames: list[tuple[float, np.ndarray]], audio: np.ndarray, rate: int,
                 audio_start: float) -> tuple[list[float], list[float]]:
    """When the flashes show (seconds, from ``(time, gray)`` frames) and when the beeps start."""
    white = [g.mean() > 200 for _, g in frames]
    # A flash lasts as long as its frame: at a lower output rate it may cover several, so take where it starts.
    flashes = [t for i, (t, _) in enumerate(frames) if white[i] and (i == 0 or not white[i - 1])]
    loud = np.flatnonzero(np.abs(audio) > 0.25)
    beeps = [audio_start + loud[0] / rate] if loud.size else []
    for a, b in zip(loud, loud[1:], strict=False):
        if b - a > rate // 2:
            beeps.append(audio_start + b / rate)
    return flashes, beeps
