"""``export.encode_audio``: one audio encoding of the whole source track, normalised, then measured.

Once per distinct encoding (AAC 48 kHz for the MP4s and HLS, Opus for WebM, MP3, WAV), for the
whole file: per-chunk AAC would click at every join (encoder priming). The chain is pass 2 of
the loudness normalisation (``loudnorm`` with pass 1's values, linear), ``aresample`` to the
preset's rate and the encoder's sample format. The written track is measured with ``ebur128``
and must land within 1 LU of the target with its true peak under the ceiling; lossy codecs can
overshoot a peak a little, so they aim 0.5 dB lower, and a track that still ends over the
ceiling is encoded once more with that much less gain, and one that lands more than
``retry_lu`` off the target (a limiter under a lossy codec's lower ceiling takes more loudness
off than pass 1 learned) once more with the miss added.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.loudness import (LOSSY_MARGIN_DB, AudioChain, LoudnessMeasurement, LoudnessTarget, measure_file,
                                       normalise_filters)
from operators.export.plan import AudioEncoding
from operators.media._av import Damage, Progress, decode_tolerant, fill_gaps, open_input
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.types import Frozen, SourceRef, StoredFile

__all__ = ["AudioParams", "AudioTrack", "encode_audio"]

#: encoder, sample format, container, file extension, content type
_CODECS: dict[str, tuple[str, str, str, str, str]] = {
    "aac": ("aac", "fltp", "mp4", "m4a", "audio/mp4"),
    "opus": ("libopus", "flt", "webm", "webm", "audio/webm"),
    "mp3": ("libmp3lame", "fltp", "mp3", "mp3", "audio/mpeg"),
    "pcm_s16le": ("pcm_s16le", "s16", "wav", "wav", "audio/wav"),
}


class AudioParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: How far under the ceiling lossy codecs aim, in dB (their peaks move a little when encoded).
    lossy_margin_db: float = Field(LOSSY_MARGIN_DB, ge=0, le=3)
    #: Allowed distance of the output's integrated loudness from the target, LU.
    tolerance_lu: float = Field(1.0, gt=0, le=5)
    #: An output further than this from the target is encoded once more with the miss added, LU.
    retry_lu: float = Field(0.5, gt=0, le=5)


class AudioTrack(Frozen):
    key: str
    file: StoredFile
    #: Seconds of the source timeline where the first sample plays (the video's origin is not subtracted).
    start: float
    duration: float
    #: Measured on the written file: integrated LUFS and true peak dBTP (None when not normalised).
    loudness: dict[str, float] | None = None


def _encode(source: SourceRef, info: MediaInfo, enc: AudioEncoding, filters: list[tuple[str, str]],
            path: str, ctx: OpContext, progress: Progress) -> tuple[float, int]:
    """Write the track; return (first sample's source time, samples written)."""
    audio = info.audio
    assert audio is not None
    name, sample_fmt, container_format, _, _ = _CODECS[enc.codec]
    layout = "mono" if enc.channels == 1 else "stereo"
    rate = enc.sample_rate
    chain = AudioChain([*filters, ("aresample", str(rate)),
                       ("aformat", f"sample_fmts={sample_fmt}:channel_layouts={layout}")])
    tb = Fraction(1, rate)
    start: float | None = None
    written = 0
    options = {"movflags": "+faststart"} if container_format == "mp4" else {}
    with ctx.storage.reading(source.path) as local, open_input(local) as container, \
            ctx.storage.writing(path) as tmp, av.open(str(tmp), "w", format=container_format, options=options) as out:
        stream = out.add_stream(name, rate=rate)
        stream.layout = layout
        if enc.bitrate:
            stream.bit_rate = enc.bitrate
        stream.codec_context.time_base = tb
        first = 0 if enc.final else None  # a delivered file starts at 0; a track keeps the source's time

        def write(frames: Any) -> None:
            nonlocal written
            for frame in frames:
                frame.pts, frame.time_base = (first or 0) + written, tb
                written += frame.samples
                out.mux(stream.encode(frame))

        source_stream = container.streams[audio.index]
        damage, decoded = Damage(), 0
        for frame in fill_gaps(decode_tolerant(container, source_stream, damage)):
            decoded += 1
            if start is None:
                start = float(frame.pts * frame.time_base) if frame.pts is not None else audio.start_seconds
                if first is None:
                    first = round(start * rate)
            if audio.duration > 0 and frame.time is not None:
                progress(min(0.9, frame.time / audio.duration))
            write(chain.push(frame))
        write(chain.flush())
        chain.close()
        out.mux(stream.encode(None))
        if damage.packets:
            # Past the share that is played through: refused, saying how much and what to try.
            Damage.check(damage.packets, decoded + damage.packets, "audio packets")
            ctx.log(f"{damage.packets} damaged audio packet(s) could not be decoded; silence is in their place")
    if start is None or written == 0:
        raise MediaError("The source's audio stream holds no decodable samples")
    return start, written


@operator("export.encode_audio", weight=3, version=1)
def encode_audio(source: SourceRef, info: MediaInfo, encoding: AudioEncoding,
                 measured: LoudnessMeasurement | None = None, loudness: LoudnessTarget | None = None, *,
                 params: AudioParams, ctx: OpContext) -> AudioTrack:
    """Encode (and normalise) the source's sound once for every preset that uses this encoding."""
    if info.audio is None:
        raise MediaError("The source has no audio stream to encode")
    progress = Progress(ctx)
    _, _, _, ext, content_type = _CODECS[encoding.codec]
    path = ctx.output_path(f"export/{encoding.preset}.{ext}" if encoding.final else f"export/audio/{encoding.key}.{ext}")
    lossy = encoding.codec != "pcm_s16le"
    normalise = loudness is not None and measured is not None and not measured.silent
    if loudness is not None and measured is not None and measured.silent:
        ctx.log(f"Loudness: the source is silent ({measured.integrated:.1f} LUFS): {encoding.key} left as it is")
    margin = params.lossy_margin_db if lossy else 0.0
    extra_gain = boost = 0.0
    result: dict[str, float] | None = None
    for attempt in (1, 2):
        filters: list[tuple[str, str]] = []
        mode = ""
        if normalise:
            assert loudness is not None and measured is not None
            wanted = measured.model_copy(update={"target_offset": measured.target_offset + boost,
                                                 "lossy_offset": measured.lossy_offset + boost})
            filters, mode = normalise_filters(loudness, wanted, margin)
            if extra_gain:
                filters.append(("volume", f"{extra_gain:.2f}dB"))
        start, samples = _encode(source, info, encoding, filters, path, ctx, progress)
        if not normalise:
            break
        assert loudness is not None
        with ctx.storage.reading(path) as local:
            result = measure_file(local)
        over = result["true_peak"] - loudness.true_peak
        short_by = loudness.target - result["integrated"]
        limited = any(name == "alimiter" for name, _ in filters)  # a linear gain lands where it is set: no retry
        if attempt == 2 or (over < 0 and (abs(short_by) <= params.retry_lu or not limited)):
            break
        if over >= 0:
            extra_gain -= over + 0.2
            ctx.log(f"Loudness: {encoding.key} peaked at {result['true_peak']:.2f} dBTP after encoding, over the "
                    f"{loudness.true_peak:g} dBTP ceiling: encoding it again {-extra_gain:.2f} dB lower")
        else:
            # The limiter took more loudness off than pass 1 learned (a lossy codec's peaks, another
            # margin): the same chain driven by the miss more lands nearer (the limiter keeps the peaks).
            boost = short_by
            ctx.log(f"Loudness: {encoding.key} measured {result['integrated']:.2f} LUFS, {short_by:+.2f} LU off the "
                    f"target: encoding it again {short_by:+.2f} dB into the limiter")
    if normalise:
        assert loudness is not None and result is not None
        off = result["integrated"] - loudness.target
        if abs(off) > params.tolerance_lu or result["true_peak"] >= loudness.true_peak:
            raise MediaError(f"Loudness: {encoding.key} measures {result['integrated']:.1f} LUFS, true peak "
                             f"{result['true_peak']:.1f} dBTP; the target is {loudness.target:g} LUFS ± "
                             f"{params.tolerance_lu:g} LU under {loudness.true_peak:g} dBTP")
        ctx.log(f"Loudness: {encoding.key} normalised ({mode}) to {result['integrated']:.1f} LUFS, true peak "
                f"{result['true_peak']:.1f} dBTP")
    rate = encoding.sample_rate
    duration = samples / rate
    meta: dict[str, object] = {"codec": encoding.codec, "sample_rate": rate, "channels": encoding.channels,
                               "duration": duration}
    if encoding.bitrate:
        meta["bitrate"] = encoding.bitrate
    if result is not None:
        meta["loudness"] = {"integrated": round(result["integrated"], 2), "true_peak": round(result["true_peak"], 2)}
    if encoding.final:
        meta["preset"] = encoding.preset
    kind = "export" if encoding.final else "export_audio"
    stored = StoredFile(path=path, kind=kind, content_type=content_type, size=ctx.storage.size(path), meta=meta)
    progress.done()
    return AudioTrack(key=encoding.key, file=stored, start=start, duration=duration,
                      loudness=meta.get("loudness"))  # type: ignore[arg-type]
