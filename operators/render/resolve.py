"""From a timeline to a frame-exact render spec: every clip placed on whole output frames.

The checks that need the assets happen here too (kinds, ranges inside the asset, the total
length), so the scheduler runs this at submission and a bad timeline is a 422 that names
the path, e.g. ``tracks.0.clips.2.in``, never a failure hours later.

Times: a clip starts on output frame ``round(at * fps)`` and lasts ``round((out - in) * fps)``
frames. Output frame ``k`` shows the source frame nearest to ``in + (k - start) / fps``; that
source time stays an exact fraction, so nothing drifts over an hour.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from operators.asset_uses import AssetUse, Loc, asset_binder
from operators.errors import AssetCheckError
from operators.media.info import AssetMedia
from operators.render.layers import (
    AudioLayer,
    CaptionLayer,
    RenderInput,
    RenderSpec,
    TextLayer,
    VisualLayer,
    frame_of,
)
from operators.render.styling.fonts import style_font, text_problem, transcript_text
from operators.render.styling.presets import preset_update
from operators.render.timeline import (
    AudioClip,
    AudioTrack,
    CaptionTrack,
    TextTrack,
    Timeline,
    VideoClip,
    VideoTrack,
    to_seconds,
)

__all__ = [
    "AssetUse",
    "AudioLayer",
    "CaptionLayer",
    "RenderInput",
    "RenderSpec",
    "TextLayer",
    "TimelineError",
    "VisualLayer",
    "asset_uses",
    "bind_timeline",
    "frame_of",
    "resolve",
]



class TimelineError(AssetCheckError):
    """Every problem found in a timeline, each with its path inside the timeline."""


def asset_uses(timeline: Timeline) -> list[AssetUse]:
    """Every asset the timeline names (:meth:`Timeline.asset_uses`)."""
    return timeline.asset_uses()


@asset_binder(Timeline)
def bind_timeline(timeline: Timeline, assets: dict[str, AssetMedia], *, max_render_seconds: float | None = None,
                  storage: Any = None, **_: Any) -> RenderInput:
    """``Timeline.with_assets``: the value the render graph sees, the timeline placed on frames. With the
    ``storage`` (at submission) the words of captions and titles are checked against their fonts too."""
    spec = resolve(timeline, assets, max_seconds=max_render_seconds, storage=storage)
    return RenderInput(timeline=timeline, assets=assets, spec=spec)


def resolve(timeline: Timeline, assets: dict[str, AssetMedia], *, max_seconds: float | None = None,
            storage: Any = None) -> RenderSpec:
    """Place every clip on output frames; raise :class:`TimelineError` listing every problem."""
    fps = timeline.fps
    problems: list[tuple[Loc, str]] = []
    visual: list[VisualLayer] = []
    text: list[TextLayer] = []
    audio: list[AudioLayer] = []
    captions: list[tuple[int, CaptionTrack]] = []
    for t, track in enumerate(timeline.tracks):
        if isinstance(track, VideoTrack):
            visual += _video_track(t, track, assets, fps, problems)
        elif isinstance(track, TextTrack):
            text += _text_track(t, track, assets, fps, problems, storage)
        elif isinstance(track, AudioTrack):
            audio += _audio_track(t, track, assets, fps, problems)
        else:
            captions.append((t, track))
    audio = _clip_sound(visual, assets, fps) + audio
    ends = [v.end for v in visual] + [x.start + x.frames for x in text]
    ends += [frame_of(a.start + a.duration, fps) for a in audio]
    explicit = to_seconds(timeline.duration, fps)
    frames = frame_of(explicit, fps) if explicit is not None else max(ends, default=0)
    if frames <= 0 and not problems:
        problems.append((("tracks",), "the timeline is empty: its clips add up to no frames"))
    if max_seconds is not None and frames / fps > max_seconds:
        problems.append((("duration",) if explicit is not None else ("tracks",),
                         f"the timeline lasts {float(frames / fps):.1f}s: at most {max_seconds:g}s can be rendered"))
    caption_layers = [_captions(t, track, visual, assets, problems, storage) for t, track in captions]
    if problems:
        raise TimelineError(problems)
    width, height = timeline.canvas.size
    return RenderSpec(width=width, height=height, fps=fps, frames=frames, background=timeline.canvas.background,
                      visual=tuple(visual), text=tuple(text), captions=tuple(c for c in caption_layers if c),
                      audio=tuple(audio))


def _kind_problem(asset: AssetMedia | None, asset_id: str, role: str) -> str | None:
    if asset is None:
        return f"asset {asset_id} not found"
    info = asset.info
    if role == "visual" and not (asset.is_image or (info is not None and info.video is not None)):
        return f"asset {asset_id} has no video or picture (it is {asset.content_type}); use it in an audio track"
    if role == "audio" and (info is None or info.audio is None):
        return f"asset {asset_id} has no audio stream"
    if role == "transcript" and asset.kind != "transcript":
        return f"asset {asset_id} is a {asset.kind}, not a transcript (a transcribe job's transcript output)"
    return None


def _range(loc: Loc, clip: VideoClip | AudioClip, asset: AssetMedia, fps: Fraction,
           problems: list[tuple[Loc, str]]) -> tuple[Fraction, Fraction] | None:
    """The source range ``[in, out)`` in seconds, checked against the asset's length."""
    src_in = to_seconds(clip.in_, fps) or Fraction(0)
    info = asset.info
    length = Fraction(repr(info.video.duration if info and info.video else (info.duration if info else 0)))
    if isinstance(clip, AudioClip) and info is not None and info.audio is not None:
        length = Fraction(repr(info.audio.duration))
    duration = to_seconds(getattr(clip, "duration", None), fps)
    if asset.is_image:
        if duration is None and clip.out is None:
            problems.append(((*loc, "duration"), "an image clip needs a duration"))
            return None
        return src_in, src_in + (duration if duration is not None else to_seconds(clip.out, fps) - src_in)
    out = to_seconds(clip.out, fps)
    out = src_in + duration if duration is not None else (out if out is not None else length)
    slack = Fraction(1, 2) / fps  # half an output frame: "out: 10" on a 9.9997 s file is fine
    if src_in >= length:
        problems.append(((*loc, "in"), f"in ({float(src_in):g}s) is at or past the end of asset {asset.id} "
                                       f"({float(length):.3f}s)"))
        return None
    if out <= src_in:
        problems.append(((*loc, "out"), f"out ({float(out):g}s) must be after in ({float(src_in):g}s)"))
        return None
    if out > length + slack:
        problems.append(((*loc, "out"), f"out ({float(out):g}s) is past the end of asset {asset.id} "
                                        f"({float(length):.3f}s)"))
        return None
    return src_in, min(out, max(length, src_in))


def _sourced(loc: Loc, clip: VideoClip | AudioClip, assets: dict[str, AssetMedia], role: str, fps: Fraction,
             problems: list[tuple[Loc, str]]) -> tuple[AssetMedia, tuple[Fraction, Fraction]] | None:
    """A clip's asset, checked for its role, and its source range; None (with the problem noted) if unusable."""
    asset = assets.get(clip.asset)
    problem = _kind_problem(asset, clip.asset, role)
    if problem:
        problems.append(((*loc, "asset"), problem))
        return None
    assert asset is not None
    span = _range(loc, clip, asset, fps, problems)
    return None if span is None else (asset, span)


def _placed(clip: Any, previous_end: int, fps: Fraction, overlap: int) -> int:
    at = to_seconds(clip.at, fps)
    return frame_of(at, fps) if at is not None else max(0, previous_end - overlap)


def _video_track(t: int, track: VideoTrack, assets: dict[str, AssetMedia], fps: Fraction,
                 problems: list[tuple[Loc, str]]) -> list[VisualLayer]:
    layers: list[VisualLayer] = []
    for c, clip in enumerate(track.clips):
        found = _sourced(("tracks", t, "clips", c), clip, assets, "visual", fps, problems)
        if found is None:
            continue
        loc: Loc = ("tracks", t, "clips", c)
        asset, span = found
        tf = frame_of(to_seconds(clip.transition.duration, fps), fps) if clip.transition else 0
        prev = layers[-1] if layers and layers[-1].clip == c - 1 else None
        start = _placed(clip, prev.end if prev else 0, fps, tf)
        frames = frame_of(span[1] - span[0], fps)
        if frames <= 0:
            problems.append(((*loc, "out"), "the clip is shorter than one output frame"))
            continue
        if prev is not None:
            overlap = prev.end - start
            if clip.transition is None and overlap > 0:
                problems.append(((*loc, "at"), f"the clip overlaps the previous one by {overlap} frames: "
                                               "move it, or add a transition"))
            elif clip.transition is not None and overlap != tf:
                problems.append(((*loc, "transition"), f"the transition lasts {tf} frames but the clip overlaps the "
                                                       f"previous one by {overlap}: leave 'at' out to place it"))
            elif tf > min(prev.frames, frames):
                problems.append(((*loc, "transition", "duration"), "the transition is longer than a clip it joins"))
            if tf and overlap == tf:
                layers[-1] = _replace(prev, transition_out=tf)
        elif clip.transition is not None:
            problems.append(((*loc, "transition"), "the first clip of a track has nothing to transition from"))
        layers.append(VisualLayer(
            track=t, clip=c, asset_id=clip.asset, path=asset.path, image=asset.is_image, start=start, frames=frames,
            src_in=span[0], clip_spec=clip,
            transition_in=(clip.transition.type, tf) if clip.transition and prev and prev.end - start == tf else None,
            fade_in=frame_of(to_seconds(clip.fade_in, fps), fps), fade_out=frame_of(to_seconds(clip.fade_out, fps), fps),
        ))
    return layers


def _replace(layer: VisualLayer, **changes: Any) -> VisualLayer:
    from dataclasses import replace

    return replace(layer, **changes)


def _font(loc: Loc, font: str, assets: dict[str, AssetMedia], problems: list[tuple[Loc, str]]
          ) -> tuple[bool, str | None]:
    """Whether ``font`` is usable, and the style's font for it (see ``styling.fonts.style_font``)."""
    asset = assets.get(font)
    path = style_font(font, asset.path if asset else None)
    if path is None and font != "default":
        problems.append((loc, f"font asset {font} not found"))
        return False, None
    return True, path


def _font_problem(loc: Loc, storage: Any, font: str | None, text: str, name: str, language: str | None,
                  problems: list[tuple[Loc, str]]) -> None:
    if storage is not None:
        problem = text_problem(storage, font, text, language=language, font_name=name)
        if problem:
            problems.append((loc, problem))


def _text_track(t: int, track: TextTrack, assets: dict[str, AssetMedia], fps: Fraction,
                problems: list[tuple[Loc, str]], storage: Any = None) -> list[TextLayer]:
    layers: list[TextLayer] = []
    end = 0
    for c, clip in enumerate(track.clips):
        loc: Loc = ("tracks", t, "clips", c, "font")
        usable, font_path = _font(loc, clip.font, assets, problems)
        if not usable:
            continue
        _font_problem(loc, storage, font_path, clip.text, _font_name(clip.font), None, problems)
        start = _placed(clip, end, fps, 0)
        frames = max(1, frame_of(to_seconds(clip.duration, fps), fps))
        end = start + frames
        layers.append(TextLayer(track=t, clip=c, start=start, frames=frames, spec=clip, font_path=font_path,
                                fade_in=frame_of(to_seconds(clip.fade_in, fps), fps),
                                fade_out=frame_of(to_seconds(clip.fade_out, fps), fps)))
    return layers


def _audio_track(t: int, track: AudioTrack, assets: dict[str, AssetMedia], fps: Fraction,
                 problems: list[tuple[Loc, str]]) -> list[AudioLayer]:
    layers: list[AudioLayer] = []
    end = Fraction(0)
    for c, clip in enumerate(track.clips):
        found = _sourced(("tracks", t, "clips", c), clip, assets, "audio", fps, problems)
        if found is None:
            continue
        asset, span = found
        start = Fraction(_placed(clip, frame_of(end, fps), fps, 0)) / fps
        end = start + span[1] - span[0]
        layers.append(AudioLayer(
            label=f"track {t + 1} clip {c + 1}", asset_id=clip.asset, path=asset.path, start=start,
            duration=span[1] - span[0], src_in=span[0], volume=clip.volume,
            fade_in=to_seconds(clip.fade_in, fps), fade_out=to_seconds(clip.fade_out, fps),
            duck=clip.duck, duck_db=clip.duck_db, enhance=clip.enhance,
        ))
    return layers


def _clip_sound(visual: list[VisualLayer], assets: dict[str, AssetMedia], fps: Fraction) -> list[AudioLayer]:
    """The sound of video clips, cut with their pictures; a transition crossfades it too, and so does an
    ``audio_crossfade`` between clips that follow each other on a track (the pictures still cut)."""
    layers: list[AudioLayer] = []
    previous: tuple[VisualLayer, int] | None = None
    for v in visual:
        info = assets[v.asset_id].info
        if v.image or info is None or info.audio is None or v.clip_spec.volume == 0:
            previous = None
            continue
        fade_in = max(Fraction(v.fade_in), Fraction(v.transition_in[1] if v.transition_in else 0)) / fps
        fade_out = Fraction(max(v.fade_out, v.transition_out)) / fps
        layer = AudioLayer(
            label=f"track {v.track + 1} clip {v.clip + 1}", asset_id=v.asset_id, path=v.path,
            start=Fraction(v.start) / fps, duration=Fraction(v.frames) / fps, src_in=v.src_in,
            volume=v.clip_spec.volume, fade_in=fade_in, fade_out=fade_out, enhance=v.clip_spec.enhance,
        )
        if previous is not None and _follows(previous[0], v):
            layers[previous[1]], layer = _crossfaded(layers[previous[1]], layer, v, assets, fps)
        previous = (v, len(layers))
        layers.append(layer)
    return layers


def _follows(prev: VisualLayer, v: VisualLayer) -> bool:
    """``v`` starts on ``prev``'s last frame's end, on the same track, with no transition between them."""
    return prev.track == v.track and prev.clip == v.clip - 1 and prev.end == v.start and v.transition_in is None


def _crossfaded(a: AudioLayer, b: AudioLayer, v: VisualLayer, assets: dict[str, AssetMedia],
                fps: Fraction) -> tuple[AudioLayer, AudioLayer]:
    """``a`` runs on past the cut and ``b`` starts before it, by half the crossfade each (as far as their
    sources have sound there, and at most half of either clip), fading out and in across the cut."""
    from dataclasses import replace

    wanted = to_seconds(v.clip_spec.audio_crossfade, fps) or Fraction(0)
    info = assets[a.asset_id].info
    left = Fraction(repr(info.audio.duration)) - (a.src_in + a.duration) if info and info.audio else Fraction(0)
    half = min(wanted / 2, b.src_in, max(left, Fraction(0)), a.duration / 2, b.duration / 2)
    if half <= 0:
        return a, b
    a = replace(a, duration=a.duration + half, fade_out=max(a.fade_out, 2 * half))
    b = replace(b, start=b.start - half, src_in=b.src_in - half, duration=b.duration + half,
                fade_in=max(b.fade_in, 2 * half))
    return a, b


def _font_name(font: str) -> str:
    return f"asset {font}" if font.startswith("asset_") else repr(font)


def _captions(t: int, track: CaptionTrack, visual: list[VisualLayer], assets: dict[str, AssetMedia],
              problems: list[tuple[Loc, str]], storage: Any = None) -> CaptionLayer | None:
    transcript = assets.get(track.transcript)
    problem = _kind_problem(transcript, track.transcript, "transcript")
    if problem:
        problems.append((("tracks", t, "transcript"), problem))
        return None
    assert transcript is not None
    # The preset's defaults for what the timeline (and its brand kit) left out.
    track = track.model_copy(update=preset_update(track))
    usable, font_path = _font(("tracks", t, "font"), track.font, assets, problems)
    if not usable:
        return None
    if storage is not None:
        try:
            text, language = transcript_text(storage, transcript.path)
        except (OSError, ValueError) as exc:
            problems.append((("tracks", t, "transcript"), f"transcript {track.transcript} cannot be read: {exc}"))
            return None
        _font_problem(("tracks", t, "font"), storage, font_path, text, _font_name(track.font), language, problems)
    if track.media is not None:
        layers = tuple(i for i, v in enumerate(visual) if v.asset_id == track.media)
    else:
        first = min((v.track for v in visual), default=None)
        layers = tuple(i for i, v in enumerate(visual) if v.track == first and not v.image)
    return CaptionLayer(track=t, spec=track, transcript_path=transcript.path, font_path=font_path, layers=layers)
