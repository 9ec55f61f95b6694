"""``tighten.build``: the plan as a new clip version, and the job's outputs.

The timeline plays the kept ranges in order, one video clip each, cut on frame boundaries (exact
fractions of the source's frame rate), each join with the plan's sound crossfade
(``audio_crossfade``). From an asset: a canvas of the source's size and rate, and a captions track
when asked for (the transcript's words follow the cuts). From a clip version: its canvas and other
tracks as they were, each kept range keeping its clip's framing (fit, crop, position, volume…).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from operators.clips.models import TranscriptUsed
from operators.context import OpContext
from operators.errors import OperatorError
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.render.timeline import Timeline
from operators.tighten.models import Cut, FillerFound, Plan, TightenSource
from operators.types import Frozen, NewClipVersion, StoredFile

__all__ = ["BuildParams", "TightenOut", "tighten_build", "tightened_timeline"]

#: A clip version's video clip fields that the kept ranges set themselves.
_PLACEMENT = ("in", "out", "duration", "at", "transition", "fade_in", "fade_out", "audio_crossfade")


class BuildParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    clip_id: str | None = Field(None, max_length=200)
    captions: Literal["none", "lines", "word-highlight", "word-pop"] = "none"


class TightenOut(Frozen):
    clip_version_id: NewClipVersion
    cuts: tuple[Cut, ...]
    fillers: tuple[FillerFound, ...]
    summary: dict[str, Any]


def _time(frame: int, fps: Fraction) -> str | int:
    value = Fraction(frame) / fps
    return value.numerator if value.denominator == 1 else str(value)


def _canvas(info: MediaInfo, fps: str) -> dict[str, Any]:
    video = info.video
    width, height = (video.display_width, video.display_height) if video else (1280, 720)
    scale = min(1.0, 4096 / max(width, height))
    even = lambda v: max(2, int(v * scale) // 2 * 2)  # noqa: E731
    return {"width": even(width), "height": even(height), "fps": fps, "background": "#000000"}


def _shifted_crop(crop: Any, offset: Fraction, fps: Fraction) -> Any:
    """Crop keys of a clip, for a piece of it starting ``offset`` seconds in: times moved, the key in force kept."""
    if not isinstance(crop, list):
        return crop
    from operators.render.values import to_seconds
    from operators.render.timeline import CropKey

    keys = [(to_seconds(CropKey.model_validate(k).t, fps) - offset, k) for k in crop]
    current = [k for t, k in keys if t <= 0][-1:] or [keys[0][1]]
    later = [{**k, "t": str(t)} for t, k in keys if t > 0]
    return [{**current[0], "t": 0}, *later]


def _video_clips(plan: Plan, source: TightenSource) -> list[dict[str, Any]]:
    fps = Fraction(plan.fps)
    kept = plan.kept
    clips = []
    for i, cut in enumerate(kept):
        base = dict(source.clips[cut.clip]) if source.clips else {}
        clip = {k: v for k, v in base.items() if k not in _PLACEMENT}
        clip.update({"asset": source.source.asset_id, "in": _time(cut.frames[0], fps),
                     "out": _time(cut.frames[1], fps)})
        if "crop" in clip:
            offset = Fraction(cut.frames[0]) / fps - Fraction(repr(source.ranges[cut.clip][0]))
            clip["crop"] = _shifted_crop(clip["crop"], offset, fps)
        first = i == 0 or kept[i - 1].clip != cut.clip
        last = i == len(kept) - 1 or kept[i + 1].clip != cut.clip
        if first and base.get("fade_in"):
            clip["fade_in"] = base["fade_in"]
        if last and base.get("fade_out"):
            clip["fade_out"] = base["fade_out"]
        if cut.crossfade:
            clip["audio_crossfade"] = cut.crossfade
        clips.append(clip)
    return clips


def tightened_timeline(plan: Plan, source: TightenSource, transcript: str | StoredFile | None,
                       captions: str) -> dict[str, Any]:
    video = {"type": "video", "clips": _video_clips(plan, source)}
    if source.timeline is not None:
        tracks = [video if t.get("type", "video") == "video" else t for t in source.timeline["tracks"]]
        return {**source.timeline, "tracks": tracks}
    tracks = [video]
    if captions != "none" and transcript is not None:
        tracks.append({"type": "captions", "transcript": transcript, "media": source.source.asset_id,
                       "style": captions})
    return {"canvas": _canvas(source.info, plan.fps), "tracks": tracks}


@operator("tighten.build", weight=0.5)
def tighten_build(plan: Plan, source: TightenSource, transcript: TranscriptUsed, *, params: BuildParams,
                  ctx: OpContext) -> TightenOut:
    """The new clip version (its timeline leaves the cuts out), the cuts, the fillers and a summary."""
    plan, source = Plan.model_validate(plan), TightenSource.model_validate(source)
    transcript = TranscriptUsed.model_validate(transcript)
    if not plan.kept:
        raise OperatorError("tighten would cut everything: nothing is left to make a clip version of")
    made = transcript.asset if isinstance(transcript.asset, StoredFile) else None
    timeline = tightened_timeline(plan, source, transcript.asset_id or made, params.captions)
    Timeline.model_validate({**timeline, "tracks": [
        {**t, "transcript": "pending"} if t.get("type") == "captions" and not isinstance(t["transcript"], str) else t
        for t in timeline["tracks"]]})  # a bug here must fail this job, not the render
    removed = [c for c in plan.cuts if not c.kept]
    summary = {"seconds_saved": plan.seconds_saved, "duration_before": plan.duration_before,
               "duration_after": plan.duration_after, "words_before": plan.words_before,
               "words_after": plan.words_after,
               "removed": {r: sum(c.reason == r for c in removed) for r in ("silence", "filler", "edit")}}
    metadata = {**summary, "source_asset_id": source.source.asset_id,
                "cuts": [{"start": c.start, "end": c.end, "reason": c.reason, "reasons": list(c.reasons)}
                         for c in removed]}
    name = params.name or f"{source.source.asset_id} (tightened)"
    version = NewClipVersion(timeline=timeline, name=name, metadata=metadata, clip_id=params.clip_id)
    ctx.log(f"New clip version: {len(plan.kept)} kept range(s), {plan.duration_after:.2f} s")
    return TightenOut(clip_version_id=version, cuts=plan.cuts, fillers=plan.fillers, summary=summary)
