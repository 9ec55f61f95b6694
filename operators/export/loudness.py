"""Loudness: the ``loudness`` payload model, and two-pass EBU R128 normalisation with libavfilter.

Pass 1 (``export.measure_loudness``, once per job) runs the source's sound through ``loudnorm``
in its analysis mode and reads the measured integrated loudness, true peak, loudness range and
gating threshold from the JSON it prints. Pass 2 (each audio encoding, :func:`normalise_filters`)
applies ``loudnorm`` in linear mode with those values: one gain for the whole file, no pumping.
``loudnorm`` itself falls back to its dynamic mode when that gain would push the true peak over
the ceiling; the log says so. Every encoded output is measured again with ``ebur128``
(:func:`measure_file`) and checked: integrated loudness within 1 LU of the target, true peak
under the ceiling.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import av.filter
import av.logging
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
    """What loudnorm's analysis pass measured on the source."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float
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


def _audio_frames(container: Any, stream: Any, progress: Progress | None, duration: float) -> Iterator[Any]:
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
        self.graph = self.source = self.sink = None
        gc.collect()  # filters print their summaries when the graph is freed


_JSON = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.S)


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("-inf")


@operator("export.measure_loudness", weight=2)
def measure_loudness(source: SourceRef, info: MediaInfo, loudness: LoudnessTarget | None = None, *,
                     ctx: OpContext) -> LoudnessMeasurement | None:
    """Pass 1: loudnorm's analysis of the source's sound (None: no target, or no audio)."""
    if loudness is None:
        ctx.log("Loudness: left as it is (loudness: null)")
        return None
    if info.audio is None:
        ctx.log("Loudness: skipped, the source has no audio stream to normalise")
        return None
    progress = Progress(ctx)
    chain = AudioChain([("loudnorm", f"I={loudness.target}:TP={loudness.true_peak}:LRA={loudness.lra}"
                                    ":print_format=json")])
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture(True) as logs:
            with ctx.storage.reading(source.path) as local, open_input(local) as container:
                stream = container.streams[info.audio.index]
                for frame in _audio_frames(container, stream, progress, info.audio.duration):
                    for _ in chain.push(frame):
                        pass
                for _ in chain.flush():
                    pass
            chain.close()
    finally:
        av.logging.set_level(previous)
    found = _JSON.search("".join(str(message) for _, _, message in logs))
    if found is None:
        raise MediaError("Loudness: the analysis pass gave no measurement (the audio may be empty)")
    values = json.loads(found.group(0))
    measured = LoudnessMeasurement(integrated=_number(values["input_i"]), true_peak=_number(values["input_tp"]),
                                   lra=max(0.0, _number(values["input_lra"])),
                                   threshold=_number(values["input_thresh"]),
                                   target_offset=_number(values.get("target_offset", "0")))
    ctx.log(f"Loudness of the source: {measured.integrated:.1f} LUFS, true peak {measured.true_peak:.1f} dBTP, "
            f"LRA {measured.lra:.1f} LU (target {loudness.target:g} LUFS, ceiling {loudness.true_peak:g} dBTP)")
    progress.done()
    return measured


def normalise_filters(target: LoudnessTarget, measured: LoudnessMeasurement, ceiling_margin: float = 0.0
                      ) -> tuple[list[tuple[str, str]], str]:
    """Pass 2's loudnorm (linear, with pass 1's values), and which mode loudnorm will use."""
    ceiling = target.true_peak - ceiling_margin
    gain = target.target - measured.integrated
    mode = "linear" if measured.true_peak + gain <= ceiling else "dynamic (a linear gain would pass the ceiling)"
    args = (f"I={target.target}:TP={ceiling:.2f}:LRA={max(target.lra, measured.lra):g}:"
            f"measured_I={measured.integrated:.2f}:measured_TP={measured.true_peak:.2f}:"
            f"measured_LRA={measured.lra:.2f}:measured_thresh={measured.threshold:.2f}:"
            f"offset={measured.target_offset:.2f}:linear=true")
    return [("loudnorm", args)], mode


def _with_end(frames: Iterator[Any]) -> Iterator[Any]:
    yield from frames
    yield None


def measure_file(local: Any) -> dict[str, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of an encoded file's sound, with ebur128."""
    chain = AudioChain([("ebur128", "peak=true:metadata=1")])
    integrated, peak = float("-inf"), 0.0
    with open_input(local, "The exported audio could not be read back") as container:
        if not container.streams.audio:
            raise MediaError("The exported file has no audio track to measure")
        frames = _audio_frames(container, container.streams.audio[0], None, 0.0)
        for frame in _with_end(frames):
            for measured in (chain.flush() if frame is None else chain.push(frame)):
                meta = measured.metadata
                if "lavfi.r128.I" in meta:
                    integrated = _number(meta["lavfi.r128.I"])
                peak = max([peak, *(_number(v) for k, v in meta.items() if k.startswith("lavfi.r128.true_peaks_ch"))])
    chain.close()
    return {"integrated": integrated, "true_peak": 20 * math.log10(peak) if peak > 0 else float("-inf")}
