"""``render.mix_audio``: the whole timeline's sound, mixed once and encoded to one AAC track.

Mixed once, not per video segment: every AAC stream starts with encoder priming, so
per-segment audio would click at every join (remotion#6010). The mix runs in blocks of a
few seconds, each clip streaming from its own decoder, so an hour of timeline never holds
more than a block of samples. Clips get their volume and fades (a video transition's
crossfade included); a clip marked ``duck`` is lowered while the other clips are loud.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from fractions import Fraction
from typing import Any

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError, OperatorError
from operators.media._av import Progress, open_input
from operators.registry import operator
from operators.render.plan import RenderPlan
from operators.render.resolve import AudioLayer
from operators.render.timeline import RenderOutput
from operators.types import StoredFile
from operators.voice.chunks import Cleaned, read_cleaned

__all__ = ["MixParams", "mix_audio", "mix_inputs"]

RATE = 48000


class MixParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block_seconds: float = Field(5.0, gt=0.1, le=60)
    #: Level of the other clips above which a ducked clip goes down (dBFS, RMS over 20 ms).
    duck_threshold_db: float = Field(-40.0, ge=-90, le=0)


class _Reader:
    """One clip's samples at 48 kHz stereo, from its ``in`` point on, in order."""

    def __init__(self, layer: AudioLayer, local: Any, stack: ExitStack) -> None:
        self.layer = layer
        self.container = stack.enter_context(open_input(local, f"The sound of {layer.label} could not be read"))
        self.stream = self.container.streams.audio[0]
        origin = Fraction(self.stream.start_time or 0) * self.stream.time_base
        self.container.seek(int(max(Fraction(0), origin + layer.src_in - Fraction(1, 10)) / self.stream.time_base),
                            stream=self.stream, backward=True)
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        self.skip = None  # samples before ``in`` still to drop, once the first frame's time is known
        self.origin = origin
        #: Decoded blocks not yet handed out, and how many samples they hold: appending to one
        #: array per 1024-sample AAC frame made each 5 s block quadratic (7 CPU-s for a 60 s edit).
        self.pending: list[np.ndarray] = []
        self.held = 0
        self.frames = self._frames()

    def _frames(self) -> Any:
        try:
            for frame in self.container.decode(self.stream):
                if self.skip is None:
                    t = Fraction(frame.pts or 0) * frame.time_base - self.origin if frame.pts is not None else self.layer.src_in
                    self.skip = max(0, round((self.layer.src_in - t) * RATE))
                for out in self.resampler.resample(frame):
                    yield out.to_ndarray()
            for out in self.resampler.resample(None):
                yield out.to_ndarray()
        except av.error.FFmpegError as exc:
            raise MediaError(f"{self.layer.label}: its sound could not be decoded ({exc})") from None

    def read(self, n: int) -> np.ndarray:
        while self.held < n:
            block = next(self.frames, None)
            if block is None:
                break
            if self.skip:
                drop = min(self.skip, block.shape[1])
                block, self.skip = block[:, drop:], self.skip - drop
            self.pending.append(block.astype(np.float32, copy=False))
            self.held += block.shape[1]
        joined = np.concatenate(self.pending, axis=1) if self.pending else np.zeros((2, 0), dtype=np.float32)
        out, rest = joined[:, :n], joined[:, n:]
        self.pending, self.held = ([rest] if rest.shape[1] else []), rest.shape[1]
        if out.shape[1] < n:  # the source ended early: silence
            out = np.pad(out, ((0, 0), (0, n - out.shape[1])))
        return out


class _CleanReader:
    """A clip's sound cleaned by voice enhance: its chunks joined, mono on both channels."""

    def __init__(self, parts: list[Cleaned], ctx: OpContext) -> None:
        self.blocks = read_cleaned(parts, ctx)
        self.pending = np.zeros(0, dtype=np.float32)

    def read(self, n: int) -> np.ndarray:
        pieces, held = [self.pending], self.pending.size
        while held < n:
            block = next(self.blocks, None)
            if block is None:
                break
            pieces.append(block.astype(np.float32, copy=False))
            held += block.size
        joined = np.concatenate(pieces)
        out, self.pending = joined[:n], joined[n:]
        if out.size < n:
            out = np.pad(out, (0, n - out.size))
        return np.vstack([out, out])


def _reader(group: int, layer: AudioLayer, cleaned: list[Cleaned], ctx: OpContext,
            stack: ExitStack) -> _Reader | _CleanReader:
    if not layer.enhance:
        return _Reader(layer, stack.enter_context(ctx.storage.reading(layer.path)), stack)
    parts = [c for c in cleaned if c.group == group]
    if not parts:
        raise OperatorError(f"{layer.label} asks for voice enhance, but no cleaned sound reached the mix "
                            "(the graph needs voice.plan_render and voice.denoise_chunk nodes)")
    return _CleanReader(parts, ctx)


def _envelope(layer: AudioLayer, first: int, n: int) -> np.ndarray:
    """Volume and linear fades for the clip's samples ``first .. first + n`` (clip-relative)."""
    total = round(layer.duration * RATE)
    idx = np.arange(first, first + n, dtype=np.float64) + 0.5
    gain = np.full(n, layer.volume, dtype=np.float64)
    fade_in, fade_out = float(layer.fade_in) * RATE, float(layer.fade_out) * RATE
    if fade_in > 0:
        gain *= np.clip(idx / fade_in, 0, 1)
    if fade_out > 0:
        gain *= np.clip((total - idx) / fade_out, 0, 1)
    return gain.astype(np.float32)


class _Ducker:
    """Gain for ducked clips from the loudness of the rest, smoothed (attack 50 ms, release 400 ms)."""

    def __init__(self, threshold_db: float) -> None:
        self.threshold = 10 ** (threshold_db / 20)
        self.level = 1.0
        self.window = RATE // 50

    def gains(self, others: np.ndarray, duck_db: float) -> np.ndarray:
        n = others.shape[1]
        low = 10 ** (duck_db / 20)
        windows = math.ceil(n / self.window)
        padded = np.pad(np.abs(others).max(axis=0), (0, windows * self.window - n))
        rms = np.sqrt((padded.reshape(windows, self.window) ** 2).mean(axis=1))
        out = np.empty(windows, dtype=np.float32)
        for i, loud in enumerate(rms > self.threshold):
            target = low if loud else 1.0
            rate = 0.33 if target < self.level else 0.05  # per 20 ms window
            self.level += (target - self.level) * rate
            out[i] = self.level
        return np.repeat(out, self.window)[:n]


def _mix_block(plan_layers: list[tuple[AudioLayer, _Reader | _CleanReader]], start: int, n: int, ducker: _Ducker) -> np.ndarray:
    plain = np.zeros((2, n), dtype=np.float32)
    ducked: list[tuple[AudioLayer, np.ndarray]] = []
    for layer, reader in plan_layers:
        s0 = round(layer.start * RATE)
        s1 = s0 + round(layer.duration * RATE)
        a, b = max(start, s0), min(start + n, s1)
        if b <= a:
            continue
        samples = reader.read(b - a) * _envelope(layer, a - s0, b - a)
        if layer.duck:
            full = np.zeros((2, n), dtype=np.float32)
            full[:, a - start:b - start] = samples
            ducked.append((layer, full))
        else:
            plain[:, a - start:b - start] += samples
    mixed = plain.copy()
    for layer, samples in ducked:
        mixed += samples * ducker.gains(plain, layer.duck_db)
    return np.clip(mixed, -1.0, 1.0)


def mix_inputs(plan: RenderPlan, output: RenderOutput | None = None,
               enhanced: list[Cleaned] | None = None) -> dict[str, Any]:
    """What the mix hangs on, for its cache key: the sound layers, the length and the AAC bitrate (not the
    pictures, titles or captions), and the cleaned chunks of the clips marked ``enhance`` (by their files)."""
    spec = plan.spec
    return {"audio": spec.audio, "frames": spec.frames, "fps": spec.fps,
            "bitrate": (output or RenderOutput()).audio_bitrate, "enhanced": enhanced or []}


@operator("render.mix_audio", weight=4, version=1, cache_key=mix_inputs)
def mix_audio(plan: RenderPlan, output: RenderOutput | None = None, enhanced: list[Cleaned] | None = None, *,
              params: MixParams, ctx: OpContext) -> StoredFile:
    """The timeline's sound as one AAC track in an .m4a, exactly as long as the video.

    ``enhanced``: the cleaned chunks of the clips marked ``enhance`` (``voice.denoise_chunk``)."""
    spec = plan.spec
    total = round(spec.duration * RATE)
    path = ctx.output_path("render/audio.m4a")
    progress = Progress(ctx)
    block = max(1024, round(params.block_seconds * RATE))
    ducker = _Ducker(params.duck_threshold_db)
    with ExitStack() as stack:
        layers = [(layer, _reader(g, layer, enhanced or [], ctx, stack)) for g, layer in enumerate(spec.audio)]
        tmp = stack.enter_context(ctx.storage.writing(path))
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("aac", rate=RATE)
            stream.layout = "stereo"
            stream.bit_rate = (output or RenderOutput()).audio_bitrate
            stream.codec_context.time_base = Fraction(1, RATE)
            for start in range(0, total, block):
                n = min(block, total - start)
                # Layers that have ended, or not begun, cost nothing: their readers are not touched.
                samples = _mix_block(layers, start, n, ducker)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
                out.mux(stream.encode(frame))
                progress(min(1.0, (start + n) / max(1, total)))
            out.mux(stream.encode(None))
    ctx.log(f"Mixed {len(spec.audio)} audio clip{'s' if len(spec.audio) != 1 else ''} into "
            f"{float(spec.duration):.2f}s of 48 kHz stereo AAC")
    progress.done()
    return StoredFile(path=path, kind="render_audio", content_type="audio/mp4", size=ctx.storage.size(path),
                      meta={"sample_rate": RATE, "channels": 2})
