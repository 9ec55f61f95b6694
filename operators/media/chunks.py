"""``media.split_keyframes``: cut the video stream into independently decodable chunks.

Only packets are read (demux, no decode). Every frame belongs to exactly one chunk by
its pts, so the chunks' frame ranges tile the stream with no gap and no overlap.
"""

from __future__ import annotations

import bisect
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.context import OpContext
from operators.media._av import Progress, open_input
from operators.media.info import Chunk, MediaInfo
from operators.media.probe import read_video_packets
from operators.registry import operator
from operators.types import SourceRef

__all__ = ["SplitParams", "plan_chunks", "split_keyframes"]


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Aimed-for chunk length; chunks end on a keyframe near it where one exists.
    target_seconds: float = Field(10.0, gt=0)
    #: No chunk (the last included) is shorter than this, unless the whole video is.
    #: None: 30% of the target, so any ``target_seconds`` alone is valid.
    min_seconds: float | None = Field(None, ge=0)
    #: A keyframe further than ``max_factor * target_seconds`` away is not waited for:
    #: the chunk is cut mid-GOP instead, so one huge GOP cannot serialise the job.
    max_factor: float = Field(1.5, ge=1.0)

    @model_validator(mode="after")
    def _min_below_target(self) -> SplitParams:
        if self.min_seconds is not None and self.min_seconds > self.target_seconds:
            raise ValueError("min_seconds must not exceed target_seconds")
        return self

    @property
    def shortest(self) -> float:
        return self.min_seconds if self.min_seconds is not None else 0.3 * self.target_seconds


def plan_chunks(packets: list[tuple[int, int, bool, int]], time_base: Fraction, params: SplitParams) -> list[Chunk]:
    """Chunks from ``(pts, seek_ts, is_keyframe, duration)`` packets in decode order."""
    if not packets:
        return []
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])
    pts = [packets[i][0] for i in order]
    # A keyframe opens a GOP; frames that come after it in decode order can be decoded from it.
    keys = sorted((p[0], p[1]) for p in packets if p[2]) or [(packets[0][0], packets[0][1])]
    key_pts = [k[0] for k in keys]
    last = order[-1]
    end_of_stream = pts[-1] + max(1, packets[last][3] or (pts[-1] - pts[-2] if len(pts) > 1 else 1))

    target = params.target_seconds / time_base
    shortest = params.shortest / time_base
    longest = params.max_factor * params.target_seconds / time_base

    bounds = [pts[0]]
    while True:
        start = bounds[-1]
        if end_of_stream - start <= longest or end_of_stream - start < target + shortest:
            break
        lo = bisect.bisect_right(key_pts, start + shortest)
        hi = bisect.bisect_right(key_pts, start + longest)
        candidates = [k for k in key_pts[lo:hi] if end_of_stream - k >= shortest]
        if candidates:
            cut = min(candidates, key=lambda k: abs(k - (start + target)))
        else:
            # No keyframe in reach: cut at the frame nearest the target.
            i = bisect.bisect_left(pts, start + target)
            cut = pts[min(i, len(pts) - 1)]
            if cut <= start or end_of_stream - cut < shortest:
                break
        bounds.append(cut)
    bounds.append(end_of_stream)

    chunks = []
    count = len(bounds) - 1
    tb = f"{time_base.numerator}/{time_base.denominator}"
    for index, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        k = max(0, bisect.bisect_right(key_pts, start) - 1)
        seek_pts, seek_ts = keys[k]
        frame_count = bisect.bisect_left(pts, end) - bisect.bisect_left(pts, start)
        chunks.append(
            Chunk(
                index=index,
                count=count,
                start_pts=start,
                end_pts=end,
                seek_pts=seek_pts,
                seek_ts=seek_ts,
                frame_count=frame_count,
                start=float(start * time_base),
                end=float(end * time_base),
                time_base=tb,
                keyframe_aligned=seek_pts == start,
            )
        )
    return chunks


@operator("media.split_keyframes", weight=1)
def split_keyframes(source: SourceRef, info: MediaInfo, *, params: SplitParams, ctx: OpContext) -> list[Chunk]:
    """Plan keyframe-aligned chunks of about ``target_seconds`` (audio-only sources: none)."""
    video = info.video
    if video is None:
        ctx.log("No video stream: nothing to split")
        return []
    progress = Progress(ctx)
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        stream = container.streams[video.index]
        packets = read_video_packets(container, stream, progress)
    chunks = plan_chunks(packets, video.tb, params)
    mid_gop = sum(not c.keyframe_aligned for c in chunks)
    ctx.log(
        f"Split {len(packets)} frames into {len(chunks)} chunks of ~{params.target_seconds:g}s"
        + (f" ({mid_gop} start mid-GOP)" if mid_gop else "")
    )
    progress.done()
    return chunks
