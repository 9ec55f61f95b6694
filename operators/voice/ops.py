"""The noise-reduction operators: plan chunks, clean each (a Dask fan-out), join them.

``voice.plan`` cuts a sound (transcribe's 16 kHz WAV, or an export source's audio) into
:class:`~operators.voice.chunks.VoiceChunk` s; ``voice.plan_render`` does it for each render
clip marked ``enhance``. ``voice.denoise_chunk`` cleans one chunk with DeepFilterNet3 at 48 kHz.
``voice.join_wav`` (transcribe) and ``voice.join_sound`` (export) crossfade the chunks back into
one file; given no chunks (denoising is off) they hand back what they were given, so a graph
needs no second path. A render's mix reads its clips' chunks itself (``render.mix_audio``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media.info import MediaInfo
from operators.media.probe import probe
from operators.registry import operator
from operators.render.plan import RenderPlan
from operators.types import Frozen, SourceRef, StoredFile
from operators.voice.chunks import Cleaned, VoiceChunk, plan_chunks, read_cleaned
from operators.voice.dfn import RATE, denoise
from operators.speech.pcm import decode_range
from operators.voice.pcm import downsample

__all__ = ["ChunkParams", "DenoiseParams", "Sound", "denoise_chunk", "join_sound", "join_wav", "plan",
           "plan_render"]

_TAIL = 4800  # 48 kHz samples decoded past a chunk: the model's look-ahead and the low-pass see real sound


class ChunkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_seconds: float = Field(30.0, ge=2, le=3600, description="Seconds of sound per parallel task")
    crossfade_seconds: float = Field(0.5, gt=0, le=2, description="Overlap blended at each join")
    warmup_seconds: float = Field(1.0, ge=0, le=10, description="Sound decoded and dropped before a chunk")
    rate: int = Field(RATE, description="Sample rate of the cleaned sound: 48000, or 16000 for speech models")


class DenoiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The most the model may turn the sound down, dB (100: as far as it likes).
    atten_lim_db: float = Field(100.0, ge=0, le=100)


class Sound(Frozen):
    """A job's sound: the source and its info, or the cleaned copy and its own."""

    source: SourceRef
    info: MediaInfo


def _check_rate(rate: int) -> int:
    if rate <= 0 or RATE % rate:
        raise MediaError(f"Noise reduction writes 48000 Hz or a rate it divides (16000), not {rate}")
    return rate


@operator("voice.plan", weight=1)
def plan(source: SourceRef | StoredFile, info: MediaInfo | None = None, *, params: ChunkParams,
         ctx: OpContext) -> list[VoiceChunk]:
    """Chunks of the source's sound for ``voice.denoise_chunk``."""
    rate = _check_rate(params.rate)
    stream = info.audio.index if info is not None and info.audio is not None else None
    if info is not None and info.audio is None:
        ctx.log("Noise reduction: the source has no sound")
        return []
    duration = info.audio.duration if info is not None and info.audio is not None else _duration(source)
    samples = round(duration * rate)
    chunks = plan_chunks(source.path, samples, rate, chunk_seconds=params.chunk_seconds,
                         crossfade_seconds=params.crossfade_seconds, warmup_seconds=params.warmup_seconds,
                         stream=stream)
    ctx.log(f"Noise reduction: {duration:.1f}s of sound in {len(chunks)} chunk(s) of {params.chunk_seconds:g}s")
    return chunks


def _duration(source: SourceRef | StoredFile) -> float:
    meta = source.meta if isinstance(source, StoredFile) else {}
    value = meta.get("duration")
    if isinstance(value, int | float):
        return float(value)
    raise MediaError("Noise reduction: the sound's duration is unknown (give the probe's info)")


@operator("voice.plan_render", weight=1)
def plan_render(plan: RenderPlan, *, params: ChunkParams, ctx: OpContext) -> list[VoiceChunk]:
    """Chunks of every render clip marked ``enhance`` (its source range), at 48 kHz."""
    chunks: list[VoiceChunk] = []
    for group, layer in enumerate(plan.spec.audio):
        if not layer.enhance:
            continue
        samples = round(layer.duration * RATE)
        chunks += plan_chunks(layer.path, samples, RATE, chunk_seconds=params.chunk_seconds,
                              crossfade_seconds=params.crossfade_seconds, warmup_seconds=params.warmup_seconds,
                              offset=float(layer.src_in), group=group)
    if chunks:
        ctx.log(f"Voice enhance: {len(chunks)} chunk(s) of clip sound to clean")
    return chunks


@operator("voice.denoise_chunk", weight=10)
def denoise_chunk(chunk: VoiceChunk, *, params: DenoiseParams, ctx: OpContext) -> Cleaned:
    """One chunk cleaned by DeepFilterNet3 (decoded at 48 kHz mono, warm-up dropped)."""
    factor = RATE // _check_rate(chunk.rate)
    lo, hi = chunk.lo * factor, chunk.hi * factor
    offset = round(chunk.offset * RATE)
    warm = min(round(chunk.warmup * RATE), offset + lo) // factor * factor
    began = time.perf_counter()
    with ctx.storage.reading(chunk.path) as local:
        sound = decode_range(local, (offset + lo - warm) / RATE, (offset + hi + _TAIL) / RATE, rate=RATE,
                             index=chunk.stream)
    cleaned = downsample(denoise(sound, atten_lim_db=params.atten_lim_db), factor)
    kept = cleaned[warm // factor : warm // factor + chunk.hi - chunk.lo]
    path = ctx.output_path(f"voice/{chunk.group}_{chunk.index:05d}.npy")
    with ctx.storage.writing(path) as tmp, open(tmp, "wb") as out:
        np.save(out, np.ascontiguousarray(kept, np.float32))
    seconds = sound.size / RATE
    ctx.log(f"Noise reduction: chunk {chunk.index + 1} ({seconds:.1f}s) in {time.perf_counter() - began:.2f}s")
    ctx.progress(1.0)
    return Cleaned(path=path, index=chunk.index, lo=chunk.lo, hi=chunk.hi, rate=chunk.rate, group=chunk.group)


def _write(path: str, blocks: Iterator[np.ndarray], rate: int, fmt: str, codec: str, sample_fmt: str,
           start: int, ctx: OpContext) -> int:
    written = 0
    with ctx.storage.writing(path) as tmp, av.open(str(tmp), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        stream.codec_context.time_base = Fraction(1, rate)
        for block in blocks:
            data = np.clip(block, -1.0, 1.0)
            if sample_fmt == "s16":
                data = np.round(data * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[None, :]), format=sample_fmt, layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start + written, Fraction(1, rate)
            written += block.size
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return written


@operator("voice.join_wav", weight=1)
def join_wav(audio: StoredFile, parts: list[Cleaned] | None = None, *, ctx: OpContext) -> StoredFile:
    """The cleaned chunks as one 16-bit mono WAV; no chunks: ``audio`` as it is."""
    if not parts:
        return audio
    rate = parts[0].rate
    path = ctx.output_path(f"audio/denoised_{rate // 1000}k_mono.wav")
    written = _write(path, read_cleaned(parts, ctx), rate, "wav", "pcm_s16le", "s16", 0, ctx)
    ctx.log(f"Noise reduction: joined {len(parts)} chunk(s) into {written / rate:.2f}s of {rate} Hz audio")
    return StoredFile(path=path, kind="audio", content_type="audio/wav", size=ctx.storage.size(path),
                      meta={"sample_rate": rate, "channels": 1, "sample_format": "s16", "duration": written / rate,
                            "denoised": True})


@operator("voice.join_sound", weight=1)
def join_sound(source: SourceRef, info: MediaInfo, parts: list[Cleaned] | None = None, *,
               ctx: OpContext) -> Sound:
    """The cleaned chunks as a 48 kHz mono FLAC track starting where the source's sound starts."""
    if not parts or info.audio is None:
        return Sound(source=source, info=info)
    path = ctx.output_path("voice/denoised.mka")
    start = round(info.audio.start_seconds * RATE)
    blocks = read_cleaned(parts, ctx)
    if start < 0:  # sound before time 0 (priming the edit list hides): dropped, as players do
        blocks = _skip(blocks, -start)
    written = _write(path, blocks, RATE, "matroska", "flac", "s16", max(0, start), ctx)
    ctx.log(f"Noise reduction: joined {len(parts)} chunk(s) into {written / RATE:.2f}s of 48 kHz mono sound")
    cleaned = SourceRef(path=path)
    return Sound(source=cleaned, info=probe(cleaned, ctx=ctx))


def _skip(blocks: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    for block in blocks:
        drop = min(n, block.size)
        n -= drop
        if block.size > drop:
            yield block[drop:]
