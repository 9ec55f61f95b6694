"""Loudness: the ``loudness`` payload model, and two-pass EBU R128 normalisation with libavfilter.

Pass 1 (``export.measure_loudness``, once per job) measures the source's integrated loudness and
gating threshold (ITU-R BS.1770-4), loudness range (EBU Tech 3342) and true peak: ``ebur128``
(``metadata=1``) tags each 100 ms frame with its momentary and short-term loudness, gated here, and
the true peak is the highest sample at 192 kHz, as ``loudnorm`` finds it. Nothing is read from
FFmpeg's log (one per process: under concurrent jobs a measurement landed in another job, issue
20); every value comes from a graph made for that one call, and travels as the node's result to
that job's encodings and report only.

Pass 2 (each encoding, :func:`normalise_filters`) applies one gain to the whole file when the true
peak allows (``volume``: loudnorm's linear mode without its silent switch to dynamic mode when
the measured range is 0, as for any clip under 3 s); otherwise that gain and a true-peak limiter
(``alimiter`` at 192 kHz), with the extra gain pass 1 found by running that chain. Every output is
measured again (:func:`measure_file`): within 1 LU of the target, its true peak under the ceiling.
Not loudnorm's dynamic mode: on a voice at -21 LUFS with -3 dBTP peaks (a usual recording) it
landed 2 LU short at every length from 8 s to 120 s, even with pass 1's ``offset``.

Short clips (issue 19; the README's export section says the same): under 0.4 s of sound there is
not one gating block, so BS.1770 defines no integrated loudness: the sound is left as it is and
reported as too short to measure.
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
from operators.media._av import Damage, decode_tolerant, fill_gaps, Progress, open_input
from operators.media.info import MediaInfo
from operators.registry import operator, payload_model
from operators.types import Frozen, SourceRef

__all__ = ["LOSSY_MARGIN_DB", "SILENT_LUFS", "AudioChain", "LoudnessMeasurement", "LoudnessTarget", "drain", "measure_file",
           "measure_loudness", "normalise_filters"]

#: Below this the source is silence (or nearly): no gain is applied to it.
SILENT_LUFS = -60.0
#: BS.1770-4 gates: blocks at or under -70 LUFS never count; the integrated loudness keeps the
#: blocks above (power mean of those) - 10 LU, the loudness range the short-term values above - 20 LU.
_ABSOLUTE_GATE, _RELATIVE_GATE, _LRA_GATE = -70.0, -10.0, -20.0
_LRA_PERCENTILES = (10.0, 95.0)
#: loudnorm resamples its input to 192 kHz and takes the highest sample there as the true peak.
_PEAK_RATE = 192000
#: BS.1770's gating block (less sound: no integrated loudness); tries at the limiter's gain (each runs the sound
#: through the chain once).
_BLOCK_SECONDS, _LIMITER_TRIES = 0.4, 6
#: How far under the ceiling lossy codecs aim, dB (their peaks move a little when encoded): export.audio's default.
LOSSY_MARGIN_DB = 0.5
#: The most dB an encoding aims under the ceiling (export.audio's ``lossy_margin_db``): past it none is peak-limited.
_MAX_CEILING_MARGIN = 3.0


@payload_model("loudness")
class LoudnessTarget(BaseModel):
    """Normalise every output's sound to ``target`` LUFS with its true peak under ``true_peak`` dBTP.

    ``null`` leaves the sound as it is; a number is the target with the default ceiling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(-14.0, ge=-70, le=-5, description="Integrated loudness, LUFS (EBU R128)")
    true_peak: float = Field(-1.0, ge=-9, le=0, description="True-peak ceiling, dBTP")
    lra: float = Field(11.0, ge=1, le=50, description="Loudness range target: accepted for clients that send it; "
                                                                   "the true-peak limiter needs none")

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
    #: The extra gain the peak-limited path needs to land on the target, LU (0: not needed), with the limiter
    #: at the ceiling (lossless encodings) ...
    target_offset: float = 0.0
    #: ... and at the ceiling lossy encodings aim at (:data:`LOSSY_MARGIN_DB` lower: more is limited off).
    lossy_offset: float = 0.0
    #: Seconds of sound measured (None: not recorded).
    duration: float | None = None

    @property
    def too_short(self) -> bool:
        """Under one gating block: BS.1770 defines no integrated loudness (the sound is left as it is)."""
        return self.duration is not None and self.duration < _BLOCK_SECONDS

    @property
    def silent(self) -> bool:
        """No gain is applied: no sound above the gates, or too little of it to measure."""
        return self.too_short or not math.isfinite(self.integrated) or self.integrated < SILENT_LUFS


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


def _audio_frames(container: Any, stream: Any, progress: Callable[[float], None] | None,
                  duration: float) -> Iterator[Any]:
    # Past damaged packets, with silence in their place: the measurement is of what the encodings will hold.
    for frame in fill_gaps(decode_tolerant(container, stream, Damage())):
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
        self.rate = 0

    def push(self, frame: Any) -> Iterator[Any]:
        if self.graph is None:
            self.rate = frame.sample_rate
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
    try:
        return float(text) if text is not None else float("-inf")
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


class _Tap:
    """A chain whose output frames are read as they come out (:meth:`_take`)."""

    chain: AudioChain

    def _take(self, frames: Iterable[Any]) -> None:
        raise NotImplementedError

    def push(self, frame: Any) -> None:
        self._take(self.chain.push(frame))

    def finish(self) -> None:
        self._take(self.chain.flush())
        self.chain.close()


class _Meter(_Tap):
    """The gating blocks of what it is fed: momentary (400 ms) and short-term (3 s) loudness every 100 ms.

    With ``metadata=1`` ebur128 cuts its input into 100 ms frames and tags each with the blocks
    that end there, so the values travel with the frames of this call's own graph. Its running
    results are not used: ``lavfi.r128.I`` bins the blocks at 0.01 LU, ``lavfi.r128.LRA`` reads
    20 LU (the gate's width) for a steady tone of a few seconds. Blocks before a window is full
    come as -120 LUFS and fall to the absolute gate, as BS.1770's first block starts at sample 0.
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

    def integrated(self) -> tuple[float, float]:
        """Integrated loudness (LUFS) and its relative gate, as loudnorm reports ``input_thresh``."""
        kept, threshold = _gate(np.asarray(self.momentary, dtype=np.float64), _RELATIVE_GATE)
        return (_power_mean(kept) if kept.size else float("-inf")), threshold

    def loudness_range(self) -> float:
        """EBU Tech 3342: the 10th to 95th percentile of the gated short-term loudness, LU."""
        kept, _ = _gate(np.asarray(self.short_term, dtype=np.float64), _LRA_GATE)
        low, high = np.percentile(kept, _LRA_PERCENTILES) if kept.size else (0.0, 0.0)
        return float(high - low)


class _PeakMeter(_Tap):
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

    def dbtp(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")


def _analyse(frames: Iterable[Any]) -> LoudnessMeasurement | None:
    """Pass 1's values for the decoded ``frames`` (None: there were none)."""
    meter, peaks = _Meter(), _PeakMeter()
    for frame in frames:
        meter.push(frame)
        peaks.push(frame)
    meter.finish()
    peaks.finish()
    if not meter.chain.samples:
        return None
    integrated, threshold = meter.integrated()
    return LoudnessMeasurement(integrated=integrated, true_peak=peaks.dbtp(), lra=meter.loudness_range(),
                               threshold=threshold, duration=meter.chain.samples / max(1, meter.chain.rate))


def _gain(db: float) -> list[tuple[str, str]]:  # doubles: peaks a limiter pulls back are not clipped first
    return [("aformat", "sample_fmts=dblp"), ("volume", f"{db:.4f}dB:precision=double")]


def _limited(db: float, ceiling: float) -> list[tuple[str, str]]:
    """The gain, then a limiter at the ceiling on the sound oversampled as the true peak is measured."""
    # latency=true: the limiter's look-ahead is taken back out, so the sound stays in sync with the picture.
    return [*_gain(db), ("aresample", str(_PEAK_RATE)),
            ("alimiter", f"limit={10 ** (ceiling / 20):.6f}:level=false:latency=true")]


def _run(frames: Iterable[Any], filters: list[tuple[str, str]]) -> float:
    """The integrated loudness (LUFS) of ``frames`` through ``filters``."""
    meter = _Meter(filters)
    for frame in frames:
        meter.push(frame)
    meter.finish()
    return meter.integrated()[0]


def _peak_offset(run: Callable[[float, float], float], target: LoudnessTarget,
                 measured: LoudnessMeasurement, ceiling: float) -> float:
    """The extra gain (LU) that lands the peak-limited path (limiter at ``ceiling``) on the target.

    The limiter takes loudness off with the peaks, and more the harder it is driven: 1 dB more in may
    give only 0.1 LU more out on peaky speech. So each try steps by the miss over the slope the last two
    tries measured (1 at first), until the chain lands within 0.05 LU; the best try is kept.
    """
    gain = target.target - measured.integrated
    tries: list[tuple[float, float]] = []  # (offset, output LUFS)
    offset = 0.0
    for n in range(_LIMITER_TRIES):
        output = run(gain + offset, ceiling)
        if not math.isfinite(output):
            break
        tries.append((offset, output))
        miss = target.target - output
        if abs(miss) < 0.05:
            break
        slope = 1.0
        if len(tries) >= 2 and tries[-1][0] != tries[-2][0]:
            slope = min(1.0, max(0.05, (tries[-1][1] - tries[-2][1]) / (tries[-1][0] - tries[-2][0])))
        offset = max(-30.0, min(30.0, offset + max(-12.0, min(12.0, miss / slope))))
    return min(tries, key=lambda t: abs(target.target - t[1]))[0] if tries else 0.0


@operator("export.measure_loudness", weight=2, version=2)
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

        def frames(start: float) -> Iterator[Any]:
            with open_input(local) as container:
                yield from _audio_frames(container, container.streams[audio.index],
                                         lambda f: progress(start + f / 2), audio.duration)

        measured = _analyse(frames(0.0))
        if measured is None:
            raise MediaError("The source's sound holds no samples that decode, so its loudness cannot be measured. "
                             "Re-save the source from your editor, or export with loudness: null to leave it as it is.")
        gain = loudness.target - measured.integrated
        if not measured.silent and measured.true_peak + gain > loudness.true_peak - _MAX_CEILING_MARGIN:
            # Some encoding's linear gain may pass its ceiling: learn the peak-limited path's miss, at the
            # ceiling (lossless encodings) and at the lossy ones' lower one.
            runs = [0]

            def run(db: float, ceiling: float) -> float:
                runs[0] += 1
                return _run(frames(min(0.95, 0.5 + runs[0] / (4 * _LIMITER_TRIES))), _limited(db, ceiling))

            measured = measured.model_copy(update={
                "target_offset": _peak_offset(run, loudness, measured, loudness.true_peak),
                "lossy_offset": _peak_offset(run, loudness, measured, loudness.true_peak - LOSSY_MARGIN_DB)})
    if measured.too_short:
        ctx.log(f"Loudness: the source's sound lasts {measured.duration:.2f}s, too short to measure (integrated "
                f"loudness needs at least {_BLOCK_SECONDS:g}s): left as it is")
    else:
        fallback = (f", {measured.target_offset:+.2f} LU more via the true-peak limiter if peaks stop a linear gain"
                    if measured.target_offset else "")
        ctx.log(f"Loudness of the source: {measured.integrated:.1f} LUFS, true peak {measured.true_peak:.1f} dBTP, "
                f"LRA {measured.lra:.1f} LU over {measured.duration:.2f}s (target {loudness.target:g} LUFS, ceiling "
                f"{loudness.true_peak:g} dBTP){fallback}")
    progress.done()
    return measured


def normalise_filters(target: LoudnessTarget, measured: LoudnessMeasurement, ceiling_margin: float = 0.0
                      ) -> tuple[list[tuple[str, str]], str]:
    """Pass 2's chain for one encoding (its ceiling ``ceiling_margin`` dB lower), and what it does."""
    ceiling = target.true_peak - ceiling_margin
    gain = target.target - measured.integrated
    if measured.true_peak + gain <= ceiling:
        return _gain(gain), "linear"
    offset = measured.target_offset if ceiling_margin <= 0 else measured.lossy_offset
    return (_limited(gain + offset, ceiling),
            "linear, with a true-peak limiter (a linear gain alone would pass the ceiling)")


def measure_file(local: Any) -> dict[str, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of an encoded file's sound, measured as pass 1 does."""
    with open_input(local, "The exported audio could not be read back") as container:
        if not container.streams.audio:
            raise MediaError("The exported file came out without its sound, so its loudness cannot be checked: "
                             "export again")
        measured = _analyse(_audio_frames(container, container.streams.audio[0], None, 0.0))
    return {key: getattr(measured, key, float("-inf")) for key in ("integrated", "true_peak")}
