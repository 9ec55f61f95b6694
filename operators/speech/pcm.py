"""Decode any media's first audio stream to 16 kHz mono float32, in blocks.

Everything here streams: a window task of a one-hour source decodes only its own 30 s,
and the VAD pass holds one block at a time, so no worker ever holds the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from operators.errors import MediaError, OperatorError
from operators.media._av import media_error
from operators.types import SourceRef, StoredFile

__all__ = ["SAMPLE_RATE", "decode_range", "iter_pcm", "media_path", "probe_audio_duration"]

SAMPLE_RATE = 16000
_PREROLL_SECONDS = 0.5


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        # FFmpeg's exception text holds an errno and the local cache path: neither means anything to a person.
        raise media_error(f"'{path.name}' could not be read as media", exc, path) from None


def _audio_stream(container: av.container.InputContainer, name: str,
                  index: int | None = None) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise MediaError(f"The source '{name}' has no audio stream to transcribe")
    return container.streams[index] if index is not None else container.streams.audio[0]


def _frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, name: str) -> Iterator[av.AudioFrame]:
    """Decoded frames of ``stream``; a corrupt packet is skipped, as players do."""
    try:
        # demux(stream) yields only this stream's packets: a video track is never decoded.
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                continue
    except av.error.FFmpegError as exc:
        raise MediaError(f"The audio of '{name}' could not be decoded: {exc}") from None


def _resampled(frames: Iterator[av.AudioFrame],
               rate: int = SAMPLE_RATE) -> Iterator[tuple[float | None, np.ndarray]]:
    """(time of the frame's first input sample or None, mono float32 samples at ``rate``)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    for frame in frames:
        t = frame.time
        # A gap or jump in the source's timestamps would make the resampler's filter
        # graph refuse the frame; the samples themselves are what we want.
        frame.pts = None
        for out in resampler.resample(frame):
            yield t, out.to_ndarray().reshape(-1)
            t = None
    for out in resampler.resample(None):
        yield None, out.to_ndarray().reshape(-1)


def iter_pcm(path: str | Path, *, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield the whole first audio stream as float32 blocks of ``block_seconds`` (the last shorter).

    Raises :class:`MediaError` if the file is not media or has no audio stream.
    """
    path = Path(path)
    block = max(1, int(round(block_seconds * SAMPLE_RATE)))
    with _open(path) as container:
        stream = _audio_stream(container, path.name)
        pending: list[np.ndarray] = []
        size = 0
        for _, samples in _resampled(_frames(container, stream, path.name)):
            pending.append(samples)
            size += samples.size
            if size >= block:
                buf = np.concatenate(pending)
                for i in range(0, buf.size - block + 1, block):
                    yield buf[i : i + block]
                rest = buf[(buf.size // block) * block :]
                pending, size = ([rest], rest.size) if rest.size else ([], 0)
        if size:
            yield np.concatenate(pending)


def decode_range(path: str | Path, start: float, end: float, *, rate: int = SAMPLE_RATE,
                 index: int | None = None) -> np.ndarray:
    """The samples of [start, end) seconds of audio stream ``index`` (default: the first), mono at ``rate``,
    found by seeking rather than decoding from 0.

    The result always has ``round(end*rate) - round(start*rate)`` samples: past the end of the
    stream (or across a gap the demuxer skips) it is padded with silence, so two ranges of one
    file line up to the sample.
    """
    path = Path(path)
    first = int(round(max(0.0, start) * rate))
    last = int(round(max(start, end) * rate))
    out = np.zeros(last - first, dtype=np.float32)
    if last <= first:
        return out
    with _open(path) as container:
        stream = _audio_stream(container, path.name, index)
        sought = False
        if first > 0 and stream.time_base is not None:
            # Seek to the stream's own timeline (its start_time may not be 0).
            # Land a little early: codecs with overlapping frames (AAC, MP3, Opus) and the
            # resampler's filter need some input before their output is exact.
            origin = stream.start_time or 0
            target = max(0.0, start - _PREROLL_SECONDS)
            try:
                container.seek(origin + int(target / stream.time_base), stream=stream, backward=True)
                sought = True
            except av.error.FFmpegError:
                sought = False  # not seekable (a pipe, some raw formats): decode from 0
        origin_s = float((stream.start_time or 0) * stream.time_base) if stream.time_base else 0.0
        pos: int | None = None if sought else 0
        for t, samples in _resampled(_frames(container, stream, path.name), rate):
            if pos is None:
                # After a seek the first decoded frame says where we landed.
                pos = int(round(((t or 0.0) - origin_s) * rate)) if t is not None else 0
                pos = max(0, pos)
            lo, hi = max(pos, first), min(pos + samples.size, last)
            if hi > lo:
                out[lo - first : hi - first] = samples[lo - pos : hi - pos]
            pos += samples.size
            if pos >= last:
                break
    return out


def probe_audio_duration(path: str | Path) -> float | None:
    """The container's idea of the audio duration in seconds, or None if it does not say."""
    path = Path(path)
    with _open(path) as container:
        stream = _audio_stream(container, path.name)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000
    return None


def media_path(audio: SourceRef | StoredFile | dict) -> str:
    """The storage path of an audio input, whether a SourceRef, a StoredFile or its dict form."""
    if isinstance(audio, SourceRef | StoredFile):
        return audio.path
    if isinstance(audio, dict) and isinstance(audio.get("path"), str):
        return audio["path"]
    raise OperatorError(f"Expected a media file reference with a 'path', got {type(audio).__name__}")
