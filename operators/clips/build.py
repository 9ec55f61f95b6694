"""``clips.build``: each clip found becomes a clip version, with a timeline ``render`` takes as is.

The timeline: the source range (``in``/``out``) as one video clip, cropped per shot (crop
keys, held; a plain rectangle when the clip is one framing), a title over the first
seconds, and a captions track of the transcript's words, mapped through the clip's cut.

The captions name the transcript *asset*. When the payload gave one, that is its id. When
the graph transcribed the source itself, the transcript's file (a ``StoredFile``) stands in
the timeline: publishing the job's outputs registers it once, as ``outputs.transcript``, and
puts its asset id there before the clip version is created.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.clips.models import ClipOut, FoundClip, Reframe, TranscriptUsed
from operators.context import OpContext
from operators.errors import OperatorError
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.render.timeline import Timeline
from operators.types import NewClipVersion, SourceRef, StoredFile

__all__ = ["BuildParams", "build", "clip_timeline"]


class BuildParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aspect_ratio: str = Field("9:16", pattern=r"^(9:16|1:1|4:5|16:9)$")
    height: int = Field(1920, ge=240, le=4096, multiple_of=2, description="canvas height in pixels")
    captions: str = Field("word-highlight", pattern=r"^(word-highlight|word-pop|lines|karaoke|highlight-box|pop|bold-upper|minimal|none)$")
    title_seconds: float = Field(3.0, ge=0, le=30, description="how long the title shows; 0: no title")


def _fps(info: MediaInfo) -> str:
    video = info.video
    if video is None:
        return "30"
    rate = Fraction(video.fps_fraction)
    return str(rate) if 1 <= rate <= 240 and rate.denominator <= 1001 else "30"


def _literal(text: str) -> str:
    """Transcript text in a timeline string: never read as a ``{{merge}}`` field."""
    return text.replace("{{", "{ {").replace("}}", "} }")


def clip_timeline(clip: FoundClip, plan: Reframe | None, asset_id: str, transcript_id: str | StoredFile,
                  info: MediaInfo, params: BuildParams) -> dict[str, Any]:
    video: dict[str, Any] = {"asset": asset_id, "in": round(clip.start, 3), "out": round(clip.end, 3)}
    windows = plan.crops if plan is not None else ()
    if len(windows) == 1:
        w = windows[0]
        video["crop"] = {"x": w.x, "y": w.y, "width": w.width, "height": w.height}
    elif windows:
        video["crop"] = [{"t": w.t, "x": w.x, "y": w.y, "width": w.width, "height": w.height} for w in windows]
        video["crop_motion"] = "hold"
    tracks: list[dict[str, Any]] = [{"type": "video", "clips": [video]}]
    h = params.height
    if params.title_seconds > 0 and clip.title:
        tracks.append({"type": "text", "clips": [{
            "text": _literal(clip.title), "duration": min(params.title_seconds, round(clip.duration, 3)),
            "size": max(8, round(h * 0.045)), "position": "top", "offset": {"x": 0, "y": 0.08},
            "outline_width": max(1, round(h / 480)), "max_width": 0.86, "fade_out": 0.3,
        }]})
    if params.captions != "none":
        tracks.append({
            "type": "captions", "transcript": transcript_id, "media": asset_id,
            "style": params.captions, "size": max(8, round(h * 0.036)), "position": "bottom", "margin": 0.16,
            "outline_width": max(1, round(h / 640)), "max_chars": 24 if params.aspect_ratio == "9:16" else 32,
        })
    canvas = {"aspect_ratio": params.aspect_ratio, "height": h, "fps": _fps(info), "background": "#000000"}
    return {"canvas": canvas, "tracks": tracks}


@operator("clips.build", weight=0.5)
def build(found: list[FoundClip], frames: list[Reframe], transcript: TranscriptUsed, source: SourceRef,
          info: MediaInfo, *, params: BuildParams, ctx: OpContext) -> list[ClipOut]:
    """The clips as new clip versions in the job's project, ranked best first."""
    if source.asset_id is None:  # clips.video_source refuses such a source first
        raise OperatorError("generate_clip needs the source as an asset (source_asset_id)")
    transcript = TranscriptUsed.model_validate(transcript)
    info = MediaInfo.model_validate(info)
    found = [FoundClip.model_validate(f) for f in found or []]
    plans = [Reframe.model_validate(p) for p in frames or []]
    if len(plans) != len(found):
        raise OperatorError(f"{len(found)} clips but {len(plans)} reframe plans")
    out = []
    for clip, plan in zip(found, plans, strict=True):
        made = transcript.asset if isinstance(transcript.asset, StoredFile) else None
        timeline = clip_timeline(clip, plan, source.asset_id, transcript.asset_id or made, info, params)
        check = timeline if transcript.asset_id else {**timeline, "tracks": [
            {**t, "transcript": "pending"} if t["type"] == "captions" else t for t in timeline["tracks"]]}
        Timeline.model_validate(check)  # a bug here must fail the job, not the render
        metadata: dict[str, Any] = {
            "score": clip.score, "components": clip.components, "reasons": list(clip.reasons), "text": clip.text,
            "start": clip.start, "end": clip.end, "rank": clip.rank, "title": clip.title,
            "source_asset_id": source.asset_id,
        }
        out.append(ClipOut(
            clip_version_id=NewClipVersion(timeline=timeline, name=clip.title, metadata=metadata),
            rank=clip.rank, start=clip.start, end=clip.end, duration=round(clip.duration, 3), score=clip.score,
            components=clip.components, reasons=clip.reasons, title=clip.title, text=clip.text,
        ))
    if out:
        ctx.log(f"Proposed {len(out)} clip version(s), best scored {out[0].score:g}")
    return out
