"""Sound in and out for noise reduction: a range of any media's audio at 48 kHz mono, resampling by 3.

Ranges are on the audio stream's own timeline (its first sample is time 0, whatever the
container's start time), found by seeking, and always exactly as long as asked: past the end
of the stream they are padded with silence. So two chunks of one file line up to the sample.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from operators.errors import MediaError
from operators.media._av import open_input

__all__ = ["decode_range", "downsample", "stream_origin"]

RATE = 48000
_PREROLL = 0.2  # seconds decoded before a range: codecs with overlapping frames need them
_TAPS = 48  # half-length of the windowed-sinc low-pass, in output samples


def stream_origin(stream: av.audio.stream.AudioStream) -> float:
    return float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0


def decode_range(path: str | Path, start: float, end: float, *, index: int | None = None) -> np.ndarray:
    """The samples of [start, end) seconds of the stream's audio, 48 kHz mono float32."""
    first, last = round(max(0.0, start) * RATE), round(max(start, end) * RATE)
    out = np.zeros(max(0, last - first), np.float32)
    if last <= first:
        return out
    with open_input(path, f"The sound of {Path(path).name} could not be read") as container:
        if not container.streams.audio:
            raise MediaError(f"{Path(path).name} has no audio stream")
        stream = container.streams[index] if index is not None else container.streams.audio[0]
        origin = stream_origin(stream)
        if start > _PREROLL and stream.time_base:
            container.seek(int((origin + start - _PREROLL) / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        pos: int | None = None
        try:
            for frame in container.decode(stream):
                if pos is None:
                    t = float(frame.pts * frame.time_base) - origin if frame.pts is not None else 0.0
                    pos = max(0, round(t * RATE))
                for block in resampler.resample(frame):
                    pos = _place(out, block.to_ndarray().reshape(-1), pos, first)
                if pos >= last:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(f"The sound of {Path(path).name} could not be decoded ({exc})") from None
    return out


def _place(out: np.ndarray, samples: np.ndarray, pos: int, first: int) -> int:
    lo, hi = max(pos, first), min(pos + samples.size, first + out.size)
    if hi > lo:
        out[lo - first : hi - first] = samples[lo - pos : hi - pos]
    return pos + samples.size


def downsample(samples: np.ndarray, factor: int) -> np.ndarray:
    """Every ``factor``-th sample after a windowed-sinc low-pass at the new Nyquist (no lag).

    Stateless, so a chunk's samples are those of the whole file away from its edges (a chunk's
    edges lie in the parts its task drops).
    """
    if factor == 1:
        return samples.astype(np.float32, copy=False)
    half = _TAPS * factor
    t = np.arange(-half, half + 1) / factor
    taps = np.sinc(t) * np.blackman(t.size) / factor
    filtered = np.convolve(samples.astype(np.float64), taps, mode="same")
    return filtered[::factor].astype(np.float32)
