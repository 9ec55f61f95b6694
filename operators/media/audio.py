"""Audio operators: the proxy's AAC track, a 16 kHz WAV for speech models, and waveform peaks.

All of them stream: frames are decoded, resampled and written one at a time, so memory
stays flat however long the source is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Damage, Progress, decode_tolerant, open_input
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.types import SourceRef, StoredFile

__all__ = [
    "AudioParams",
    "ExtractAudioParams",
    "WaveformParams",
    "extract_audio",
    "is_speech_wav",
    "media_origin",
    "transcode_audio",
    "waveform",
]

# Rates the AAC encoder accepts; anything else is resampled to 48 kHz.
_AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}


def media_origin(info: MediaInfo) -> float:
    """Time 0 of every output, in source seconds: the first video frame, else the first sample."""
    if info.video is not None:
        return float(info.video.start_pts * info.video.tb)
    return info.audio.start_seconds if info.audio is not None else 0.0


def _decoded(container: Any, stream: Any, progress: Progress, duration: float,
             damage: Damage | None = None) -> Iterator[Any]:
    for frame in decode_tolerant(container, stream, damage if damage is not None else Damage()):
        if duration > 0 and frame.time is not None:
            progress(min(0.99, frame.time / duration))
        yield frame


class AudioParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codec: Literal["aac"] = "aac"
    bitrate: int = Field(128000, ge=16000, le=512000)
    #: More channels than this are downmixed (browsers and editors want stereo).
    max_channels: int = Field(2, ge=1, le=8)
    #: Copy the source's track untouched when it already is what we would write: AAC-LC in
    #: an MP4/MOV, at most ``bitrate`` (+5 %) and ``max_channels``. Re-encoding AAC to AAC only loses
    #: quality, and costs ~0.7 CPU-s a minute, the whole tail of a 2-core ingest.
    copy_compatible: bool = True


@operator("media.transcode_audio", weight=2)
def transcode_audio(
    source: SourceRef, info: MediaInfo, *, params: AudioParams, ctx: OpContext
) -> StoredFile | None:
    """Encode the whole audio track once to AAC in an .m4a, for the proxy (None without audio).

    Done once rather than per video chunk: every AAC stream starts with encoder priming,
    so per-chunk audio would leave a gap at every join. Timestamps are the source's, so the
    join can line audio up with video.
    """
    audio = info.audio
    if audio is None:
        ctx.log("No audio stream: the proxy will be silent")
        return None
    if params.copy_compatible and _copyable(info, params):
        return _copy_audio(source, info, ctx)
    rate = audio.sample_rate if audio.sample_rate in _AAC_RATES else 48000
    layout = "mono" if min(audio.channels, params.max_channels) == 1 else "stereo"
    if params.max_channels > 2 and audio.channels > 2:
        layout = audio.layout
    path = ctx.output_path("proxy/audio.m4a")
    progress = Progress(ctx)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    with ctx.storage.reading(source.path) as local, open_input(local) as container, ctx.storage.writing(path) as tmp:
        stream = container.streams[audio.index]
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream(params.codec, rate=rate)
            ostream.layout = layout
            ostream.bit_rate = params.bitrate
            tb = Fraction(1, rate)
            ostream.codec_context.time_base = tb
            next_pts: int | None = None
            damage = Damage()
            for frame in _decoded(container, stream, progress, audio.duration, damage):
                if next_pts is not None and frame.pts is not None:
                    # Damaged packets left a hole: silence in their place keeps what follows in sync.
                    gap = round(frame.pts * frame.time_base * rate) - next_pts
                    if gap > rate // 100:
                        next_pts = _silence(out, ostream, gap, next_pts, layout, rate)
                for out_frame in resampler.resample(frame):
                    if next_pts is None:
                        # Count samples from the first frame on: source timestamps can jitter
                        # by a sample, and AAC needs a gapless run.
                        next_pts = round(frame.pts * frame.time_base * rate) if frame.pts is not None else 0
                    out_frame.pts, out_frame.time_base = next_pts, tb
                    next_pts += out_frame.samples
                    out.mux(ostream.encode(out_frame))
            for out_frame in resampler.resample(None):
                if next_pts is not None:
                    out_frame.pts, out_frame.time_base = next_pts, tb
                    next_pts += out_frame.samples
                out.mux(ostream.encode(out_frame))
            out.mux(ostream.encode(None))
            if next_pts is None:
                raise MediaError("The source's audio stream holds no decodable samples")
    if damage.packets:
        packets = _packet_count(source, info, ctx)
        Damage.check(damage.packets, packets, "audio packets")
        ctx.log(f"{damage.packets} of the source's {packets} audio packets were damaged and could not be decoded: "
                "silence is in their place")
    size = ctx.storage.size(path)
    ctx.log(f"Encoded the audio track to {params.codec} {params.bitrate // 1000} kb/s, {rate} Hz {layout}")
    progress.done()
    return StoredFile(
        path=path,
        kind="proxy_audio",
        content_type="audio/mp4",
        size=size,
        meta={"sample_rate": rate, "channels": 1 if layout == "mono" else 2, "codec": params.codec},
    )


def _silence(out: Any, stream: Any, samples: int, pts: int, layout: str, rate: int) -> int:
    """Encode ``samples`` of silence at ``pts``; the pts after them."""
    channels = len(av.AudioLayout(layout).channels)
    frame = av.AudioFrame.from_ndarray(np.zeros((channels, samples), np.float32), format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    out.mux(stream.encode(frame))
    return pts + samples


def _packet_count(source: SourceRef, info: MediaInfo, ctx: OpContext) -> int:
    """The source's audio packets (a demux, no decode), for the share of them that was damaged."""
    audio = info.audio
    assert audio is not None
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        return sum(1 for p in container.demux(container.streams[audio.index]) if p.size)


def _copyable(info: MediaInfo, params: AudioParams) -> bool:
    audio = info.audio
    return (
        audio is not None
        and audio.codec == "aac"
        and audio.profile == "LC"
        # Only an MP4-family source holds raw AAC as the MP4 muxer wants it (ADTS in TS does not).
        and info.format.startswith("mov,mp4")
        and audio.bit_rate is not None
        # AAC encoders hover around their target: a "128 kb/s" track may average 129.
        and audio.bit_rate <= params.bitrate * 1.05
        and audio.channels <= params.max_channels
        and audio.sample_rate in _AAC_RATES
    )


def _copy_audio(source: SourceRef, info: MediaInfo, ctx: OpContext) -> StoredFile:
    """The source's AAC packets, remuxed as they are into a faststart .m4a."""
    audio = info.audio
    assert audio is not None
    path = ctx.output_path("proxy/audio.m4a")
    with ctx.storage.reading(source.path) as local, open_input(local) as container, ctx.storage.writing(path) as tmp:
        stream = container.streams[audio.index]
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream_from_template(stream)
            copied = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packet.stream = ostream
                out.mux(packet)
                copied += 1
    if copied == 0:
        raise MediaError("The source's audio stream holds no packets")
    ctx.log(f"Copied the source's AAC track ({(audio.bit_rate or 0) // 1000} kb/s, {audio.sample_rate} Hz, "
            f"{audio.channels} ch): it already fits the proxy")
    return StoredFile(
        path=path,
        kind="proxy_audio",
        content_type="audio/mp4",
        size=ctx.storage.size(path),
        meta={"sample_rate": audio.sample_rate, "channels": audio.channels, "codec": "aac", "copied": True},
    )


def is_speech_wav(info: MediaInfo, sample_rate: int, channels: int) -> bool:
    """True when the source is exactly what ``extract_audio`` would write.

    Only a WAV with one stream qualifies: its sample 0 is time 0 (WAV has no start offset
    and no video to align to), so the transcript needs no offset either way.
    """
    audio = info.audio
    return (
        audio is not None
        and info.format == "wav"
        and len(info.streams) == 1
        and audio.codec == "pcm_s16le"
        and audio.sample_rate == sample_rate
        and audio.channels == channels
        and audio.start_pts == 0
    )


class ExtractAudioParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_rate: int = Field(16000, ge=8000, le=192000)
    channels: Literal[1, 2] = 1
    #: Fail the job when the source has no audio, instead of returning nothing.
    require: bool = False
    #: Return the source itself when it already is what would be written (a WAV holding only
    #: one 16-bit PCM stream at ``sample_rate`` and ``channels``): transcribing ingest's audio
    #: then costs no decode, encode or copy. Off by default so that a job's outputs always
    #: live in its own folder; turn it on where the WAV is only an intermediate (transcribe).
    reuse_source: bool = False


@operator("media.extract_audio", weight=2, version=1)
def extract_audio(
    source: SourceRef, info: MediaInfo, *, params: ExtractAudioParams, ctx: OpContext
) -> StoredFile | None:
    """16-bit PCM WAV (16 kHz mono by default) for speech models, aligned to the proxy's time 0."""
    audio = info.audio
    if audio is None:
        if params.require:
            raise MediaError("The source has no audio stream")
        ctx.log("No audio stream: nothing to extract")
        return None
    layout = "mono" if params.channels == 1 else "stereo"
    rate = params.sample_rate
    if params.reuse_source and is_speech_wav(info, rate, params.channels):
        ctx.log(f"The source already is {rate} Hz {layout} 16-bit PCM WAV: using it as is")
        ctx.progress(1.0)
        return StoredFile(
            path=source.path,
            kind="audio",
            content_type="audio/wav",
            size=info.size,
            meta={"sample_rate": rate, "channels": params.channels, "sample_format": "s16",
                  "duration": audio.duration, "reused_source": True},
        )
    path = ctx.output_path(f"audio/{rate // 1000}k_{layout}.wav")
    progress = Progress(ctx)
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    written = 0
    with ctx.storage.reading(source.path) as local, open_input(local) as container, ctx.storage.writing(path) as tmp:
        stream = container.streams[audio.index]
        with av.open(str(tmp), "w", format="wav") as out:
            ostream = out.add_stream("pcm_s16le", rate=rate)
            ostream.layout = layout
            tb = Fraction(1, rate)
            ostream.codec_context.time_base = tb
            # Leading silence when audio starts after the first video frame, so that sample 0
            # is the proxy's time 0 and transcript timestamps need no offset.
            lead = round((audio.start_seconds - media_origin(info)) * rate)
            if lead > 0:
                silence = av.AudioFrame.from_ndarray(
                    np.zeros((1, lead * params.channels), dtype=np.int16), format="s16", layout=layout
                )
                silence.sample_rate = rate
                silence.pts, silence.time_base = 0, tb
                out.mux(ostream.encode(silence))
                written = lead

            def write(frames: list[Any]) -> None:
                nonlocal written
                for f in frames:
                    f.pts, f.time_base = written, tb
                    written += f.samples
                    out.mux(ostream.encode(f))

            for frame in _decoded(container, stream, progress, audio.duration):
                write(resampler.resample(frame))
            write(resampler.resample(None))
            out.mux(ostream.encode(None))
    size = ctx.storage.size(path)
    ctx.log(f"Extracted {written / rate:.2f}s of {rate} Hz {layout} audio")
    progress.done()
    return StoredFile(
        path=path,
        kind="audio",
        content_type="audio/wav",
        size=size,
        meta={"sample_rate": rate, "channels": params.channels, "sample_format": "s16", "duration": written / rate},
    )


class WaveformParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    peaks_per_second: int = Field(50, ge=1, le=1000)
    #: Decimal places kept in the JSON (4 is finer than any screen pixel).
    precision: int = Field(4, ge=1, le=6)


@operator("media.waveform", weight=1)
def waveform(audio: StoredFile | None, *, params: WaveformParams, ctx: OpContext) -> StoredFile | None:
    """Min/max peaks per time bucket, normalised to [-1, 1], as JSON for the editor's timeline."""
    if audio is None:
        return None
    progress = Progress(ctx)
    out_path = ctx.output_path("waveform.json")
    mins: list[np.ndarray] = []
    maxs: list[np.ndarray] = []
    with ctx.storage.reading(audio.path) as local, open_input(local, "The audio file could not be read") as container:
        if not container.streams.audio:
            raise MediaError("The waveform input holds no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        per_peak = max(1, round(rate / params.peaks_per_second))
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        carry = np.zeros(0, dtype=np.float32)
        samples = 0

        def consume(frames: list[Any], final: bool = False) -> None:
            nonlocal carry, samples
            parts = [carry] + [f.to_ndarray().reshape(-1) for f in frames]
            data = np.concatenate(parts) if len(parts) > 1 else carry
            whole = len(data) // per_peak * per_peak
            if whole:
                blocks = data[:whole].reshape(-1, per_peak)
                mins.append(blocks.min(axis=1))
                maxs.append(blocks.max(axis=1))
            carry = data[whole:]
            if final and len(carry):
                mins.append(carry.min(keepdims=True))
                maxs.append(carry.max(keepdims=True))
                carry = carry[:0]

        for frame in _decoded(container, stream, progress, duration):
            samples += frame.samples
            consume(resampler.resample(frame))
        consume(resampler.resample(None), final=True)
    lo = np.clip(np.concatenate(mins) if mins else np.zeros(0), -1.0, 1.0)
    hi = np.clip(np.concatenate(maxs) if maxs else np.zeros(0), -1.0, 1.0)
    pairs = np.round(np.stack([lo, hi], axis=1).reshape(-1), params.precision)
    doc = {
        "version": 1,
        "sample_rate": rate,
        "samples_per_peak": per_peak,
        "peaks_per_second": rate / per_peak,
        "length": int(len(lo)),
        "duration": samples / rate if rate else 0.0,
        "data": pairs.tolist(),
    }
    with ctx.storage.writing(out_path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
    progress.done()
    return StoredFile(
        path=out_path,
        kind="waveform",
        content_type="application/json",
        size=ctx.storage.size(out_path),
        meta={"peaks_per_second": doc["peaks_per_second"], "length": doc["length"]},
    )
