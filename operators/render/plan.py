"""``render.plan``: cut the output timeline into segments, and lay out every title and caption.

Segments are a few seconds of output frames each, rendered in parallel. Titles and caption
states become :class:`Overlay` records (text, style, frames), so a segment task rasterises
only the states it shows, once per worker (``text.rasterize`` is cached).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator
from operators.render.captions import CaptionState, Cut, TimedWord, caption_states, map_words
from operators.render.resolve import CaptionLayer, RenderInput, RenderSpec, frame_of
from operators.render.styling.fonts import drawing_font
from operators.render.styling.keywords import accent_keywords, given_keywords, keyword_scores
from operators.render.styling.presets import safe_rect
from operators.render.text import Lines, TextStyle, wrap
from operators.render.timeline import parse_color
from operators.speech.models import Transcript
from operators.types import Frozen, StoredFile

__all__ = ["Overlay", "PlanParams", "RenderPlan", "Segment", "plan_segments", "render_plan"]


class PlanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Output seconds per segment task: long enough that a seek and a GOP decoded for nothing
    #: stay small, short enough that the tasks balance across workers.
    segment_seconds: float = Field(5.0, gt=0.2, le=600)


class Segment(Frozen):
    index: int
    count: int
    start: int  # first output frame
    end: int  # one past the last


@dataclass(frozen=True, slots=True)
class Overlay:
    """A title or one caption state: drawn on output frames ``[start, end)``."""

    track: int
    start: int
    end: int
    lines: Lines
    style: TextStyle
    position: str
    offset: tuple[float, float] = (0.0, 0.0)
    margin: int = 0
    opacity: float = 1.0
    fade_in: int = 0
    fade_out: int = 0
    #: The part of the canvas it is placed in, (x, y, width, height); None: the whole canvas.
    area: tuple[int, int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class RenderPlan:
    spec: RenderSpec
    assets: dict[str, object]
    overlays: tuple[Overlay, ...]
    segments: tuple[Segment, ...]
    timeline: StoredFile


def plan_segments(frames: int, fps: Fraction, seconds: float) -> list[Segment]:
    """Equal runs of whole frames, each about ``seconds`` long."""
    count = max(1, round(frames / max(1, frame_of(Fraction(repr(seconds)), fps))))
    bounds = [frames * i // count for i in range(count + 1)]
    return [Segment(index=i, count=count, start=a, end=b) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def _title_overlays(spec: RenderSpec) -> list[Overlay]:
    overlays = []
    for layer in spec.text:
        clip = layer.spec
        style = TextStyle(font=drawing_font(layer.font_path, clip.text), size=clip.size, color=parse_color(clip.color),
                          outline_color=parse_color(clip.outline_color), outline_width=clip.outline_width,
                          background=parse_color(clip.background) if clip.background else None,
                          padding=clip.padding, align=clip.align, max_width=int(spec.width * clip.max_width))
        overlays.append(Overlay(track=layer.track, start=layer.start, end=layer.start + layer.frames,
                                lines=wrap(clip.text, style), style=style, position=clip.position,
                                offset=(clip.offset.x, clip.offset.y), opacity=clip.opacity,
                                fade_in=layer.fade_in, fade_out=layer.fade_out))
    return overlays


def _caption_overlays(spec: RenderSpec, layer: CaptionLayer, ctx: OpContext) -> list[Overlay]:
    with ctx.storage.reading(layer.transcript_path) as local:
        transcript = Transcript.model_validate_json(local.read_bytes())
    cuts = [Cut(src_start=v.src_in, src_end=v.src_in + Fraction(v.frames) / spec.fps,
                out_start=Fraction(v.start) / spec.fps) for v in (spec.visual[i] for i in layer.layers)]
    words = map_words(transcript.words, cuts)
    track = layer.spec
    if track.uppercase:
        words = [TimedWord(w.text.upper(), w.start, w.end) for w in words]
    states = caption_states(words, style=track.style, max_chars=track.max_chars, max_lines=track.max_lines,
                            words_per_pop=track.words_per_pop, highlight=parse_color(track.highlight_color))
    if track.emphasize_keywords:
        states = _emphasised(states, transcript, track)
    area = safe_rect(track.safe_area, spec.width, spec.height) if track.safe_area != "none" else None
    font = drawing_font(layer.font_path, " ".join(w.text for w in words))
    style = TextStyle(font=font, size=track.size, color=parse_color(track.color),
                      outline_color=parse_color(track.outline_color), outline_width=track.outline_width,
                      background=parse_color(track.background) if track.background else None,
                      max_width=int((area[2] if area else spec.width) * 0.92),
                      box_padding=round(track.size * 0.15) if track.style == "highlight-box" else 0)
    style = _fitting(style, states, spec.width, ctx)
    margin = round(track.margin * spec.height)
    overlays = []
    for state in states:
        start, end = frame_of(Fraction(repr(state.start)), spec.fps), frame_of(Fraction(repr(state.end)), spec.fps)
        if end > start:
            overlays.append(Overlay(track=layer.track, start=start, end=min(end, spec.frames), lines=state.lines,
                                    style=style, position=track.position, margin=margin, area=area))
    ctx.log(f"Captions: {len(words)} words on screen from {len(transcript.words)} in the transcript (cuts drop "
            f"or repeat words), {len(overlays)} {track.style} states at {style.size} px")
    return overlays


def _emphasised(states: list[CaptionState], transcript: Transcript, track: Any) -> list[CaptionState]:
    """The states with each line's keyword (the timeline's list, else the talk's TF-IDF keywords) accented."""
    from dataclasses import replace

    if track.keywords is not None:
        scores = given_keywords(track.keywords)
    else:
        scores = keyword_scores([[w.word for w in segment.words] for segment in transcript.segments])
    accent = parse_color(track.accent_color)
    return [replace(state, lines=accent_keywords(state.lines, scores, accent)) for state in states]


def _fitting(style: TextStyle, states: list[Any], width: int, ctx: OpContext) -> TextStyle:
    """The style, its font made smaller if the widest caption line would not fit the canvas.

    Cues are laid out by characters (``max_chars``), so how wide a line is depends on the font:
    42 characters at 56 px are ~1100 px, wider than a 1080 px portrait canvas. One size for the
    whole track, so captions do not change size from cue to cue.
    """
    from dataclasses import replace

    from operators.render.text import load_font

    path = _local(style.font, ctx)
    lines = {" ".join(run.text for run in line) for state in states for line in state.lines}
    room = style.max_width - 2 * max(style.outline_width, style.box_padding) - (
        2 * style.padding if style.background else 4)

    def widest(size: int) -> float:
        font = load_font(path, size)
        return max((font.getlength(text) for text in lines), default=0.0)

    first = widest(style.size)
    size = style.size
    while size > 8 and widest(size) > room:  # glyph widths do not scale exactly with the size
        size = max(8, min(size - 1, int(size * room / widest(size))))
    if size == style.size:
        return style
    ctx.log(f"Captions: the widest line is {first:.0f} px at {style.size} px, wider than the canvas allows "
            f"({room} px): drawn at {size} px")
    return replace(style, size=size)


def _local(font: str | None, ctx: OpContext) -> str | None:
    if font is None or font.startswith("bundled:"):
        return font
    with ctx.storage.reading(font) as local:  # remote storage: measured from a temporary copy
        return str(local) if ctx.storage.is_local else _copy_font(local)


def _copy_font(local: Any) -> str:
    import shutil
    import tempfile

    target = tempfile.NamedTemporaryFile(prefix="ave-font-", suffix=".ttf", delete=False)
    target.close()
    shutil.copyfile(local, target.name)
    return target.name


@operator("render.plan", weight=1)
def render_plan(timeline: RenderInput, *, params: PlanParams, ctx: OpContext) -> RenderPlan:
    """Segments of the output, the overlays, and the resolved timeline written as JSON."""
    spec = timeline.spec
    overlays = _title_overlays(spec)
    for layer in spec.captions:
        overlays += _caption_overlays(spec, layer, ctx)
    segments = plan_segments(spec.frames, spec.fps, params.segment_seconds)
    path = ctx.output_path("render/timeline.json")
    resolved = {"timeline": timeline.to_json(), "width": spec.width, "height": spec.height,
                "fps": f"{spec.fps.numerator}/{spec.fps.denominator}", "frames": spec.frames,
                "duration": float(spec.duration),
                "clips": [{"track": v.track, "clip": v.clip, "asset": v.asset_id, "start_frame": v.start,
                           "frames": v.frames, "in": float(v.src_in)} for v in spec.visual]}
    with ctx.storage.writing(path) as tmp:
        tmp.write_text(json.dumps(resolved, indent=1))
    stored = StoredFile(path=path, kind="timeline", content_type="application/json", size=ctx.storage.size(path))
    ctx.log(f"Planned {spec.frames} frames ({float(spec.duration):.2f}s at {spec.fps}) {spec.width}x{spec.height} "
            f"in {len(segments)} segments; {len(spec.visual)} clips, {len(overlays)} text states")
    return RenderPlan(spec=spec, assets=dict(timeline.assets), overlays=tuple(overlays), segments=tuple(segments),
                      timeline=stored)
