"""``render.join``: the segments and the mixed sound into one faststart MP4, verified like ingest's.

Packets are copied (nothing re-encoded); segments already carry output-frame pts. The
result is read back and checked: every segment in order, the exact frame count
(``round(duration * fps)``), audio and video within a frame of each other at both ends, and
the index (moov) at the front so players start before the download ends.
"""

from __future__ import annotations

import heapq
from contextlib import ExitStack
from fractions import Fraction
from typing import Any

import av
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, mp4_options, open_input
from operators.media.join import concat_video_packets, measure_output, retime_packets
from operators.media.probe import probe
from operators.media.thumbnails import PosterParams, poster
from operators.registry import operator
from operators.render.plan import RenderPlan
from operators.render.segment import SegmentOutput
from operators.types import SourceRef, StoredFile

__all__ = ["RenderJoinParams", "render_join", "render_poster"]


class RenderJoinParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_drift_frames: float = Field(1.0, gt=0)
    filename: str = Field("render.mp4", pattern=r"^[\w.-]+\.mp4$")


def _check_segments(parts: list[SegmentOutput], plan: RenderPlan) -> list[SegmentOutput]:
    ordered = sorted(parts, key=lambda p: p.index)
    if [p.index for p in ordered] != list(range(len(plan.segments))):
        raise MediaError(f"The rendered segments are incomplete: got {[p.index for p in ordered]} "
                         f"of {len(plan.segments)}")
    expected = 0
    for part in ordered:
        if part.start != expected:
            raise MediaError(f"Segment {part.index + 1} starts at frame {part.start}, not {expected}")
        expected += part.frames
    if expected != plan.spec.frames:
        raise MediaError(f"The segments hold {expected} frames but the timeline has {plan.spec.frames}")
    return ordered


@operator("render.join", weight=2)
def render_join(parts: list[SegmentOutput], audio: StoredFile, plan: RenderPlan, *,
                params: RenderJoinParams, ctx: OpContext) -> StoredFile:
    """One MP4 from the segments and the mix; raises if any check fails."""
    ordered = _check_segments(parts, plan)
    spec = plan.spec
    tb = 1 / spec.fps
    path = ctx.output_path(f"render/{params.filename}")
    progress = Progress(ctx)
    with ctx.storage.writing(path) as tmp:
        with ExitStack() as stack:
            out = stack.enter_context(av.open(str(tmp), "w", format="mp4", options=mp4_options(tb, faststart=True)))
            with ctx.storage.reading(ordered[0].path) as first, open_input(first) as c0:
                out_v = out.add_stream_from_template(c0.streams.video[0])
            out_v.time_base = tb
            audio_local = stack.enter_context(ctx.storage.reading(audio.path))
            ain = stack.enter_context(open_input(audio_local, "The mixed audio track could not be read"))
            out_a = out.add_stream_from_template(ain.streams.audio[0])
            video = concat_video_packets(ctx, [(p.path, f"Segment {p.index + 1}") for p in ordered], Fraction(0), out_v)
            streams = [video, retime_packets(ain, ain.streams.audio[0], Fraction(0), out_a, 1)]
            for n, (_, _, packet) in enumerate(heapq.merge(*streams, key=lambda t: (t[0], t[1]))):
                out.mux(packet)
                progress(min(0.95, n / max(1, spec.frames * 2)))
        measured = measure_output(tmp)
        _verify(measured, plan, params)
    ctx.log(f"Joined {len(ordered)} segments: {spec.frames} frames, {float(spec.duration):.2f}s, faststart")
    progress.done()
    meta = {"width": spec.width, "height": spec.height, "frame_count": spec.frames,
            "duration": float(spec.duration), "fps": f"{spec.fps.numerator}/{spec.fps.denominator}"}
    return StoredFile(path=path, kind="render", content_type="video/mp4", size=ctx.storage.size(path), meta=meta)


def _verify(measured: dict[str, Any], plan: RenderPlan, params: RenderJoinParams) -> None:
    spec = plan.spec
    if measured["frames"] != spec.frames:
        raise MediaError(f"The render has {measured['frames']} frames but the timeline has {spec.frames}")
    if not measured["moov_first"]:
        raise MediaError("The render is not faststart: its index is not at the front of the file")
    if "audio_start" not in measured:
        raise MediaError("The render lost its audio track")
    frame = float(1 / spec.fps) * params.max_drift_frames
    start = measured["audio_start"] - measured["video_start"]
    end = start + measured["audio_duration"] - measured["video_duration"]
    drift = max(abs(start), abs(end))
    if drift >= frame:
        raise MediaError(f"The render drifts out of sync: audio is {drift * 1000:.1f} ms off the video "
                         f"(allowed: under {frame * 1000:.1f} ms)")


@operator("render.poster", weight=1)
def render_poster(video: StoredFile, *, params: PosterParams, ctx: OpContext) -> StoredFile | None:
    """A JPEG of the rendered video (10 % in unless ``at_seconds``), as ingest makes one."""
    source = SourceRef(path=video.path)
    return poster(source, probe(source, ctx=ctx), params=params, ctx=ctx)
