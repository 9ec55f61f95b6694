"""Checks every exported file goes through before it is handed out.

:func:`measure` reads a file's packets (no decode): frames, spans, keyframes, the codec tag.
:func:`check_timing` holds it to the source: the exact frame count, the duration within one
frame, audio and video within one frame of each other at both ends (against the source's own
offset, so a source whose sound starts late is not "fixed"). :func:`decoded_frames` decodes it
all, for the codecs whose files we cannot otherwise trust (VP9, AV1). :func:`first_time` is when
a file's first packet decodes (where an HLS package must start). Messages name the preset's file
and say what to try.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from operators.errors import MediaError
from operators.media._av import open_input
from operators.media.info import MediaInfo
from operators.media.join import moov_first, sync_drift

__all__ = ["Measured", "check_timing", "decoded_frames", "faststart", "first_time", "longer_or_shorter",
           "measure"]


@dataclass
class Measured:
    frames: int = 0
    video_start: float = 0.0
    video_end: float = 0.0
    keyframes: list[float] = field(default_factory=list)
    codec_tag: str = ""
    audio_start: float | None = None
    audio_end: float | None = None

    @property
    def video_duration(self) -> float:
        return self.video_end - self.video_start

    @property
    def audio_duration(self) -> float:
        return (self.audio_end or 0.0) - (self.audio_start or 0.0)


def _span(container: Any, stream: Any, keys: list[float] | None = None) -> tuple[int, float, float]:
    count, start, end = 0, None, None
    tb = stream.time_base
    for packet in container.demux(stream):
        if not packet.size or packet.pts is None or packet.is_discard:
            continue
        count += 1
        t0 = float(packet.pts * tb)
        start = t0 if start is None else min(start, t0)
        end = max(end or t0, float((packet.pts + (packet.duration or 0)) * tb))
        if keys is not None and packet.is_keyframe:
            keys.append(t0)
    return count, start or 0.0, end or 0.0


def measure(local: Path | str, what: str = "The exported file") -> Measured:
    """Frames, keyframes and spans (seconds) of a written file, from its packets."""
    out = Measured()
    with open_input(local, f"{what} could not be read back") as c:
        if c.streams.video:
            stream = c.streams.video[0]
            out.codec_tag = stream.codec_tag or ""
            out.frames, out.video_start, out.video_end = _span(c, stream, out.keyframes)
            out.keyframes.sort()
    with open_input(local, f"{what} could not be read back") as c:
        if c.streams.audio:
            _, out.audio_start, out.audio_end = _span(c, c.streams.audio[0])
    return out


def check_timing(name: str, measured: Measured, info: MediaInfo, *, frames: int, fps: float, duration: float,
                 with_audio: bool, max_drift_frames: float = 1.0) -> None:
    """The exact frame count, the duration within a frame of the source's, A/V drift under a frame.

    ``name`` is the preset's; the messages say what is wrong with the file and what to try.
    """
    video = info.video
    assert video is not None
    frame = 1.0 / fps
    if measured.frames != frames:
        raise MediaError(f"The {name} file came out with {measured.frames} frames where the source has {frames}. "
                         "Export again; if it happens again, re-save the source at a constant frame rate and "
                         "export that.")
    if abs(measured.video_duration - duration) > frame + 1e-3:
        raise MediaError(f"The {name} file came out {longer_or_shorter(measured.video_duration - duration)} than "
                         f"the source ({measured.video_duration:.3f}s against {duration:.3f}s; at most one frame, "
                         f"{frame * 1000:.1f} ms, is allowed). Re-save the source at a constant frame rate and "
                         "export again.")
    if not with_audio or info.audio is None:
        return
    if measured.audio_start is None:
        raise MediaError(f"The {name} file came out without its sound: export again")
    drift = sync_drift(info, measured.video_start, measured.video_duration, measured.audio_start,
                       measured.audio_duration)
    if drift >= frame * max_drift_frames:
        raise MediaError(f"In the {name} file the sound drifts {drift * 1000:.0f} ms against the picture (under "
                         f"{frame * max_drift_frames * 1000:.1f} ms is allowed), so it would play out of sync. "
                         "Re-save the source from your editor so its sound and picture start and end together, "
                         "and export again.")


def decoded_frames(local: Path | str, what: str = "The exported file") -> int:
    """Every video frame decoded (a file that does not decode fails here, with the decoder's words)."""
    with open_input(local, f"{what} does not decode") as c:
        if not c.streams.video:
            return 0
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in c.decode(stream))


def faststart(local: Path | str) -> bool:
    """True when an MP4's index (moov) comes before its media data, so players start at once."""
    return moov_first(local)


def first_time(local: Path | str, video: bool, what: str = "An encoded file") -> Fraction:
    """When a file's first video (or audio) packet decodes, in seconds (0 without one)."""
    with open_input(local, f"{what} could not be read") as c:
        streams = c.streams.video if video else c.streams.audio
        if not streams:
            return Fraction(0)
        stream = streams[0]
        first = next((p for p in c.demux(stream) if p.size and p.dts is not None), None)
        return first.dts * stream.time_base if first is not None else Fraction(0)


def longer_or_shorter(seconds: float) -> str:
    """``37 ms longer`` / ``12 ms shorter``: how a length compares, for messages."""
    return f"{abs(seconds) * 1000:.0f} ms {'longer' if seconds > 0 else 'shorter'}"
