"""Loudness: the ``loudness`` payload model, and two-pass EBU R128 normalisation with libavfilter.

Pass 1 (``export.measure_loudness``, once per job) measures the source's integrated loudness and
its gating threshold (ITU-R BS.1770-4), loudness range (EBU Tech 3342) and true peak. Nothing is
read from FFmpeg's log: its level and callback are one per process and PyAV's capture is per
thread, so under concurrent jobs a measurement printed to the log went missing or landed in
another job's capture (issue 20). Instead ``ebur128`` with ``metadata=1`` tags each 100 ms frame
with its momentary (400 ms) and short-term (3 s) loudness, which are the gating blocks of both
measures, and the gating is done here; the true peak is the highest sample of the sound
oversampled to 192 kHz, which is exactly how ``loudnorm`` measures it. Every value comes from the
frames of a filter graph made for that one call, so no other job can touch it.

Pass 2 (each audio encoding, :func:`normalise_filters`) applies ``loudnorm`` in linear mode with
those values: one gain for the whole file, no pumping. ``loudnorm`` itself falls back to its
dynamic mode when that gain would push the true peak over the ceiling; for that case pass 1 also
runs the dynamic mode once and keeps how far it missed the target as ``target_offset``. Every
encoded output is measured again (:func:`measure_file`) and checked: integrated loudness within
1 LU of the target, true peak under the ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import av.filter
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, open_input
from operators.media.info import MediaInfo
from operators.registry import operator, payload_model
from operators.types import Frozen, SourceRef

__all__ = ["AudioChain", "LoudnessMeasurement", "LoudnessTarget", "drain", "measure_file", "measure_loudness", "normalise_filters"]

#: Below this the source is silence (or nearly): no gain is applied to it.
SILENT_LUFS = -60.0
#: BS.1770-4 gates: blocks at or under -70 LUFS never count; the integrated loudness keeps the
#: blocks above (power mean of those) - 10 LU, the loudness range the short-term values above - 20 LU.
_ABSOLUTE_GATE = -70.0
_RELATIVE_GATE = -10.0
_LRA_GATE = -20.0
_LRA_PERCENTILES = (10.0, 95.0)
#: loudnorm resamples its input to 192 kHz and takes the highest sample there as the true peak.
_PEAK_RATE = 192000
#: The most dB an encoding aims under the ceiling (``AudioParams.lossy_margin_db`` in export.audio,
#: which imports this module): past it no encoding can fall back to loudnorm's dynamic mode.
_MAX_CEILING_MARGIN = 3.0

#: Where a pass reports how far it got (0..1).
_Report = Callable[[float], None]


@payload_model("loudness")
class LoudnessTarget(BaseModel):
    """Normalise every output's sound to ``target`` LUFS with its true peak under ``true_peak`` dBTP.

    ``null`` leaves the sound as it is; a number is the target with the default ceiling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(-14.0, ge=-70, le=-5, description="Integrated loudness, LUFS (EBU R128)")
    true_peak: float = Field(-1.0, ge=-9, le=0, description="True-peak ceiling, dBTP")
    lra: float = Field(11.0, ge=1, le=50, description="Loudness range target (loudnorm's dynamic fallback)")

    @model_validator(mode="before")
    @classmethod
    def _number(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"target": data}
        return data


class LoudnessMeasurement(Frozen):
    """What pass 1 measured on the source, in the terms loudnorm's pass 2 takes them."""

    #: Integrated loudness, LUFS (-inf: no 400 ms block above the absolute gate).
    integrated: float
    #: True peak, dBTP (the highest sample at 192 kHz).
    true_peak: float
    #: Loudness range, LU.
    lra: float
    #: The relative gate of the integrated loudness, LUFS (-70 when nothing passed the absolute gate).
    threshold: float
    #: How far loudnorm's dynamic mode fell short of the target with these values, LU (0: not needed).
    target_offset: float = 0.0

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.integrated) or self.integrated < SILENT_LUFS


def drain(graph: Any, sink: Any = None) -> Iterator[Any]:
    """Every frame the graph has ready now."""
    while True:
        try:
            yield (sink.pull() if sink is not None else graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return


def _chain(graph: Any, source: Any, filters: list[tuple[str, str]]) -> Any:
    node = source
    for name, args in filters:
        nxt = graph.add(name, args)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    return sink


def _audio_frames(container: Any, stream: Any, progress: _Report | None, duration: float) -> Iterator[Any]:
    for frame in container.decode(stream):
        if progress is not None and duration > 0 and frame.time is not None:
            progress(min(0.99, frame.time / duration))
        yield frame


class AudioChain:
    """A filter chain fed decoded frames; its buffer source is made from the first frame."""

    def __init__(self, filters: list[tuple[str, str]]) -> None:
        self.filters = filters
        self.graph: Any = None
        self.source: Any = None
        self.sink: Any = None
        self.samples = 0

    def push(self, frame: Any) -> Iterator[Any]:
        if self.graph is None:
            self.graph = av.filter.Graph()
            self.source = self.graph.add_abuffer(format=frame.format.name, sample_rate=frame.sample_rate,
                                                 layout=frame.layout.name, time_base=Fraction(1, frame.sample_rate))
            self.sink = _chain(self.graph, self.source, self.filters)
        # Samples counted from the first: no gaps or overlaps from the source's timestamp jitter.
        frame.pts, frame.time_base = self.samples, Fraction(1, frame.sample_rate)
        self.samples += frame.samples
        self.source.push(frame)
        yield from drain(self.graph, self.sink)

    def flush(self) -> Iterator[Any]:
        if self.graph is None:
            return
        self.source.push(None)
        yield from drain(self.graph, self.sink)

    def close(self) -> None:
        # Nothing refers back to the graph, so dropping it frees it and its buffers at once; no
        # gc.collect(), which would pause every thread of the worker.
        self.graph = self.source = self.sink = None


def _number(text: str | None) -> float:
    """A metadata value; missing or unreadable reads as no sound at all."""
    if text is None:
        return float("-inf")
    try:
        return float(text)
    except ValueError:
        return float("-inf")


def _power_mean(levels: np.ndarray) -> float:
    """The loudness of the mean power of blocks given in LUFS (BS.1770's -0.691 cancels out)."""
    return float(10 * np.log10(np.mean(np.power(10.0, levels / 10))))


def _gate(levels: np.ndarray, relative_gate: float) -> tuple[np.ndarray, float]:
    """The blocks above both gates, and the relative gate (absolute gate when none pass it)."""
    above = levels[levels > _ABSOLUTE_GATE]
    if not above.size:
        return above, _ABSOLUTE_GATE
    threshold = _power_mean(above) + relative_gate
    return above[above > threshold], threshold


class _Meter:
    """The gating blocks of what it is fed: momentary (400 ms) and short-term (3 s) loudness every 100 ms.

    With ``metadata=1`` ebur128 cuts its input into 100 ms frames and tags each with the blocks
    that end there, so the values travel with the frames of this call's own graph. Its own
    running results are not used: ``lavfi.r128.I`` bins the blocks at 0.01 LU, and
    ``lavfi.r128.LRA`` reads 20 LU (the gate's width) for a steady tone of a few seconds. Blocks
    before a window is full come as -120 LUFS and fall to the absolute gate, as BS.1770's first
    block starts at the first sample.
    """

    def __init__(self, before: list[tuple[str, str]] | None = None) -> None:
        self.chain = AudioChain([*(before or []), ("ebur128", "metadata=1")])
        self.momentary: list[float] = []
        self.short_term: list[float] = []

    def _take(self, frames: Iterable[Any]) -> None:
        for frame in frames:
            meta = frame.metadata
            if "lavfi.r128.M" in meta:
                self.momentary.append(_number(meta["lavfi.r128.M"]))
                self.short_term.append(_number(meta.get("lavfi.r128.S")))

    def push(self, frame: Any) -> None:
        self._take(self.chain.push(frame))

    def finish(self) -> None:
        self._take(self.chain.flush())
        self.chain.close()

    def integrated(self) -> tuple[float, float]:
        """Integrated loudness (LUFS) and its relative gate, as loudnorm reports ``input_thresh``."""
        kept, threshold = _gate(np.asarray(self.momentary, dtype=np.float64), _RELATIVE_GATE)
        return (_power_mean(kept) if kept.size else float("-inf")), threshold

    def loudness_range(self) -> float:
        """EBU Tech 3342: the 10th to 95th percentile of the gated short-term loudness, LU."""
        kept, _ = _gate(np.asarray(self.short_term, dtype=np.float64), _LRA_GATE)
        if not kept.size:
            return 0.0
        low, high = np.percentile(kept, _LRA_PERCENTILES)
        return float(high - low)


class _PeakMeter:
    """The true peak as loudnorm finds it: the highest sample once oversampled to 192 kHz."""

    def __init__(self) -> None:
        # Doubles out of the resampler, so an inter-sample peak over full scale is not clipped.
        self.chain = AudioChain([("aresample", str(_PEAK_RATE)), ("aformat", "sample_fmts=dblp")])
        self.peak = 0.0

    def _take(self, frames: Iterable[Any]) -> None:
        for frame in frames:
            samples = frame.to_ndarray()
            if samples.size:
                self.peak = max(self.peak, float(np.max(np.abs(samples))))

    def push(self, frame: Any) -> None:
        self._take(self.chain.push(frame))

    def finish(self) -> None:
        self._take(self.chain.flush())
        self.chain.close()

    def dbtp(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")


def _analyse(frames: Iterable[Any]) -> LoudnessMeasurement | None:
    """Pass 1's values for the decoded ``frames`` (None: there were none)."""
    meter, peaks = _Meter(), _PeakMeter()
    count = 0
    for frame in frames:
        count += 1
        meter.push(frame)
        peaks.push(frame)
    meter.finish()
    peaks.finish()
    if not count:
        return None
    integrated, threshold = meter.integrated()
    return LoudnessMeasurement(integrated=integrated, true_peak=peaks.dbtp(), lra=meter.loudness_range(),
                               threshold=threshold)


def _loudnorm_args(target: LoudnessTarget, measured: LoudnessMeasurement, ceiling: float, linear: bool) -> str:
    return (f"I={target.target}:TP={ceiling:.2f}:LRA={max(target.lra, measured.lra):g}:"
            f"measured_I={measured.integrated:.2f}:measured_TP={measured.true_peak:.2f}:"
            f"measured_LRA={measured.lra:.2f}:measured_thresh={measured.threshold:.2f}:"
            f"offset={measured.target_offset:.2f}:linear={'true' if linear else 'false'}")


def _dynamic_offset(frames: Iterable[Any], target: LoudnessTarget, measured: LoudnessMeasurement) -> float:
    """How far loudnorm's dynamic mode, given ``measured``, lands under the target (LU).

    Pass 2 hands this to loudnorm as ``offset``, a gain it applies only in the dynamic fallback,
    as FFmpeg's two-pass recipe does with the first pass's ``target_offset``. Running the mode
    with the measured values is what pass 2 will run, so the miss is the one to correct.
    """
    meter = _Meter([("loudnorm", _loudnorm_args(target, measured, target.true_peak, linear=False))])
    for frame in frames:
        meter.push(frame)
    meter.finish()
    output, _ = meter.integrated()
    return max(-99.0, min(99.0, target.target - output)) if math.isfinite(output) else 0.0


@operator("export.measure_loudness", weight=2)
def measure_loudness(source: SourceRef, info: MediaInfo, loudness: LoudnessTarget | None = None, *,
                     ctx: OpContext) -> LoudnessMeasurement | None:
    """Pass 1: the source's loudness, true peak and range (None: no target, or no audio)."""
    if loudness is None:
        ctx.log("Loudness: left as it is (loudness: null)")
        return None
    if info.audio is None:
        ctx.log("Loudness: skipped, the source has no audio stream to normalise")
        return None
    progress = Progress(ctx)
    audio = info.audio
    with ctx.storage.reading(source.path) as local:
        with open_input(local) as container:
            frames = _audio_frames(container, container.streams[audio.index],
                                   lambda f: progress(f / 2), audio.duration)
            measured = _analyse(frames)
        if measured is None:
            raise MediaError("Loudness: the source's audio stream holds no decodable samples")
        gain = loudness.target - measured.integrated
        if not measured.silent and measured.true_peak + gain > loudness.true_peak - _MAX_CEILING_MARGIN:
            # Some encoding's linear gain may pass its ceiling: learn the dynamic fallback's miss.
            with open_input(local) as container:
                frames = _audio_frames(container, container.streams[audio.index],
                                       lambda f: progress(0.5 + f / 2), audio.duration)
                offset = _dynamic_offset(frames, loudness, measured)
            measured = measured.model_copy(update={"target_offset": offset})
    fallback = (f", {measured.target_offset:+.2f} LU of offset if loudnorm falls back to its dynamic mode"
                if measured.target_offset else "")
    ctx.log(f"Loudness of the source: {measured.integrated:.1f} LUFS, true peak {measured.true_peak:.1f} dBTP, "
            f"LRA {measured.lra:.1f} LU (target {loudness.target:g} LUFS, ceiling {loudness.true_peak:g} dBTP)"
            f"{fallback}")
    progress.done()
    return measured


def normalise_filters(target: LoudnessTarget, measured: LoudnessMeasurement, ceiling_margin: float = 0.0
                      ) -> tuple[list[tuple[str, str]], str]:
    """Pass 2's loudnorm (linear, with pass 1's values), and which mode loudnorm will use."""
    ceiling = target.true_peak - ceiling_margin
    gain = target.target - measured.integrated
    mode = "linear" if measured.true_peak + gain <= ceiling else "dynamic (a linear gain would pass the ceiling)"
    return [("loudnorm", _loudnorm_args(target, measured, ceiling, linear=True))], mode


def measure_file(local: Any) -> dict[str, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of an encoded file's sound, measured as pass 1 does."""
    with open_input(local, "The exported audio could not be read back") as container:
        if not container.streams.audio:
            raise MediaError("The exported file has no audio track to measure")
        measured = _analyse(_audio_frames(container, container.streams.audio[0], None, 0.0))
    if measured is None:
        return {"integrated": float("-inf"), "true_peak": float("-inf")}
    return {"integrated": measured.integrated, "true_peak": measured.true_peak}
