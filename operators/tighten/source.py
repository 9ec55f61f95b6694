"""``tighten.source``: what to tighten, checked before any work: a video asset, or a clip version's timeline.

A clip version's timeline must have one video track, every clip of it a range of the source asset
(the job's ``source_asset_id``, or its first clip's asset): its clips' ranges are what is tightened,
in play order, and its other tracks (titles, captions, music) are kept as they are.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from operators.context import OpContext
from operators.errors import MediaError, OperatorError
from operators.media.info import MediaInfo
from operators.media.probe import probe
from operators.registry import operator
from operators.render.layers import RenderInput
from operators.render.timeline import VideoTrack
from operators.tighten.models import TightenSource
from operators.types import SourceRef

__all__ = ["source_fps", "tighten_source"]


def source_fps(info: MediaInfo) -> str:
    """The source's frame rate as the new timeline's (30 when it has none a canvas can take)."""
    rate = Fraction(info.video.fps_fraction) if info.video is not None else Fraction(30)
    return str(rate) if 1 <= rate <= 240 and rate.denominator <= 1001 else "30"


Ranges = tuple[tuple[float, float], ...]


def _from_timeline(source: SourceRef, edit: RenderInput) -> tuple[Ranges, tuple[dict[str, Any], ...], str]:
    tracks = [i for i, t in enumerate(edit.timeline.tracks) if isinstance(t, VideoTrack)]
    if len(tracks) != 1:
        raise OperatorError(f"tighten needs a timeline with one video track (the source); this one has {len(tracks)}")
    fps = edit.spec.fps
    layers = sorted((v for v in edit.spec.visual if v.track == tracks[0]), key=lambda v: v.start)
    others = sorted({v.asset_id for v in layers} - {source.asset_id})
    if others or any(v.image for v in layers):
        raise OperatorError(f"tighten needs every clip of the video track to be a range of {source.asset_id}; "
                            f"it also shows {', '.join(others) or 'an image'}")
    ranges = tuple((float(v.src_in), float(v.src_in + Fraction(v.frames) / fps)) for v in layers)
    clips = tuple(v.clip_spec.model_dump(mode="json", by_alias=True, exclude_defaults=True) for v in layers)
    return ranges, clips, str(fps)


@operator("tighten.source", weight=1)
def tighten_source(source: SourceRef, timeline: RenderInput | None = None, *, ctx: OpContext) -> TightenSource:
    """The source asset (a video), and the ranges of it the edit plays."""
    if source.asset_id is None:
        raise OperatorError("tighten makes a clip version, whose timeline names assets: give source_asset_id")
    info = probe(source, ctx=ctx)
    if info.video is None or info.audio is None:
        raise MediaError(f"tighten needs a source with video and sound; this one has no "
                         f"{'video' if info.video is None else 'audio'} stream")
    if timeline is None:
        end = info.video.duration
        ctx.log(f"Tightening {source.asset_id} (0–{end:.2f} s)")
        return TightenSource(source=source, info=info, fps=source_fps(info), ranges=((0.0, end),))
    ranges, clips, fps = _from_timeline(source, timeline)
    ctx.log(f"Tightening the clip version's {len(ranges)} clip(s) of {source.asset_id}")
    return TightenSource(source=source, info=info, fps=fps, ranges=ranges, clips=clips, timeline=timeline.to_json())
