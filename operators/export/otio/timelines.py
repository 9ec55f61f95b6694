"""``export.timelines``: a clip version's edit as files editing apps open, through OpenTimelineIO.

Formats (``timeline_formats``): ``otio`` (OpenTimelineIO JSON), ``fcpxml`` (Final Cut Pro X,
DaVinci Resolve), ``fcp7xml`` (Premiere Pro, FCP 7 XML) and ``edl`` (CMX 3600). Each video track
becomes a track of clips (gaps where nothing plays), each audio track a track of audio clips.
In and out points are whole frames at the *source's* rate, taken from the same frame placement
the renderer uses (:mod:`operators.render.resolve`); positions are frames at the timeline's rate.
At 29.97/59.94 fps the EDL's timecodes are drop-frame (``00:00:12;00``). A transition becomes
an OTIO transition centred on the cut, both clips trimmed by its halves (their media still
covers it). Media are referenced by a relative path (``media/<file name>``) or, with
``media_base_url``, by their asset URL. Titles and captions are not clips here: captions come as
SRT/VTT sidecars.

Every file is read back with OpenTimelineIO before it is handed out and must give the same
clips, in and out points and order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel

from operators.context import OpContext
from operators.errors import MediaError, did_you_mean
from operators.export.otio import adapters as otio_adapters
from operators.registry import operator, payload_model
from operators.render.resolve import RenderInput
from operators.render.timeline import AudioTrack, VideoTrack
from operators.types import StoredFile

__all__ = ["FORMATS", "TimelineFormats", "TimelineParams", "build_timeline", "clip_ranges", "drop_frame", "for_format",
           "read_back",
           "summary", "timelines"]

#: name -> (OTIO adapter, file extension, content type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "otio": ("otio_json", "otio", "application/json"),
    "fcpxml": ("fcpx_xml", "fcpxml", "application/xml"),
    "fcp7xml": ("fcp_xml", "xml", "application/xml"),
    "edl": ("cmx_3600", "edl", "text/plain"),
}


def _known(value: str) -> str:
    if value not in FORMATS:
        raise ValueError(f"unknown timeline format '{value}'.{did_you_mean(value, FORMATS)} "
                         f"Formats: {', '.join(FORMATS)}")
    return value


@payload_model("timeline_formats")
class TimelineFormats(RootModel[list[Annotated[str, AfterValidator(_known)]]]):
    """Timeline files to write for the job's clip version: otio, fcpxml, fcp7xml, edl."""

    root: list[Annotated[str, AfterValidator(_known)]] = Field(default_factory=list, max_length=4)

    def __bool__(self) -> bool:
        return bool(self.root)

    @property
    def formats(self) -> list[str]:
        return list(dict.fromkeys(self.root))


class TimelineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field("Export", min_length=1, max_length=200)
    #: Media by URL (``<base>/assets/<id>/content``); omitted: by relative path ``media/<file>``.
    media_base_url: str | None = Field(None, max_length=500, pattern=r"^https?://")


def _rate(value: Fraction) -> float:
    return float(value)


def drop_frame(rate: Fraction) -> bool:
    """29.97 and 59.94 fps count timecode in drop-frame (23.976 has none)."""
    return rate in (Fraction(30000, 1001), Fraction(60000, 1001))


def _timecode_metadata(rate: Fraction) -> dict[str, Any]:
    """Asks the FCP 7 XML writer for drop-frame timecode where the rate has it (the EDL writer does so itself)."""
    return {"fcp_xml": {"timecode": {"displayformat": "DF"}}} if drop_frame(rate) else {}


def _media_urls(ti: RenderInput, base: str | None) -> dict[str, str]:
    """Each asset's reference: its URL, or ``media/<file name>`` (the asset id added where names clash)."""
    names: dict[str, str] = {}
    used = [a for a in dict.fromkeys(v.asset_id for v in ti.spec.visual)] + \
           [a for a in dict.fromkeys(x.asset_id for x in ti.spec.audio)]
    basenames = [PurePosixPath(ti.assets[a].path).name for a in dict.fromkeys(used)]
    for asset_id in dict.fromkeys(used):
        if base:
            names[asset_id] = f"{base.rstrip('/')}/assets/{asset_id}/content"
            continue
        name = PurePosixPath(ti.assets[asset_id].path).name
        names[asset_id] = f"media/{name}" if basenames.count(name) == 1 else f"media/{asset_id}-{name}"
    return names


def _source_rate(ti: RenderInput, asset_id: str) -> Fraction:
    info = ti.assets[asset_id].info
    if info is not None and info.video is not None and not ti.assets[asset_id].is_image:
        return info.video.rate
    return ti.spec.fps


def clip_ranges(ti: RenderInput) -> Iterator[tuple[str, int, list[dict[str, Any]]]]:
    """Per track (kind, index): its clips as frame numbers, gaps and transitions resolved.

    Each clip: ``asset``, ``start`` (timeline frames), ``duration`` (timeline frames), ``in`` and
    ``frames`` (at ``rate``, the source's), ``transition`` (type, frames) from the previous clip.
    """
    spec = ti.spec
    fps = spec.fps
    for t, track in enumerate(ti.timeline.tracks):
        if isinstance(track, VideoTrack):
            layers = sorted((v for v in spec.visual if v.track == t), key=lambda v: v.start)
            clips = []
            for v in layers:
                rate = _source_rate(ti, v.asset_id)
                clips.append({"asset": v.asset_id, "start": v.start, "duration": v.frames, "rate": rate,
                              "in": round(v.src_in * rate), "frames": round(Fraction(v.frames) / fps * rate),
                              "transition": v.transition_in, "image": v.image, "clip": v.clip})
            yield "video", t, clips
        elif isinstance(track, AudioTrack):
            prefix = f"track {t + 1} clip "
            layers = sorted((a for a in spec.audio if a.label.startswith(prefix)), key=lambda a: a.start)
            clips = []
            for a in layers:
                rate = _source_rate(ti, a.asset_id)
                start = round(a.start * fps)
                clips.append({"asset": a.asset_id, "start": start, "duration": round(a.duration * fps), "rate": rate,
                              "in": round(a.src_in * rate), "frames": round(a.duration * rate), "transition": None,
                              "image": False, "clip": int(a.label.removeprefix(prefix)) - 1})
            yield "audio", t, clips


def build_timeline(ti: RenderInput, title: str, media_base_url: str | None = None) -> Any:
    """The clip version's edit as an OpenTimelineIO timeline."""
    otio = otio_adapters.load()
    ot = otio.opentime
    rate = _rate(ti.spec.fps)
    urls = _media_urls(ti, media_base_url)
    timeline = otio.schema.Timeline(name=title, metadata=_timecode_metadata(ti.spec.fps))
    timeline.global_start_time = ot.RationalTime(0, rate)
    counts = {"video": 0, "audio": 0}
    for kind, t, clips in clip_ranges(ti):
        counts[kind] += 1
        track = otio.schema.Track(name=f"{'V' if kind == 'video' else 'A'}{counts[kind]}",
                                  kind=otio.schema.TrackKind.Video if kind == "video" else otio.schema.TrackKind.Audio)
        cursor = 0
        previous, previous_rate = None, ti.spec.fps
        for clip in clips:
            src_rate = _rate(clip["rate"])
            start, duration, first, frames = clip["start"], clip["duration"], clip["in"], clip["frames"]
            transition = clip["transition"]
            if transition is not None and previous is not None:
                kind_name, n = transition
                head, tail = n // 2, n - n // 2
                # The cut sits inside the overlap: the outgoing clip loses its last `tail` frames, this one
                # its first `head`; the transition covers both with the media that is still there.
                prev_range = previous.source_range
                scale = _rate(previous_rate) / rate
                previous.source_range = ot.TimeRange(prev_range.start_time, ot.RationalTime(
                    prev_range.duration.value - round(tail * scale), prev_range.duration.rate))
                cursor -= tail
                track.append(otio.schema.Transition(
                    name=kind_name, transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve if kind_name == "fade"
                    else otio.schema.TransitionTypes.Custom, in_offset=ot.RationalTime(head, rate),
                    out_offset=ot.RationalTime(tail, rate), metadata={"ave": {"type": kind_name}}))
                skip = round(head * src_rate / rate)
                first, frames, start, duration = first + skip, frames - skip, start + head, duration - head
            if start > cursor:
                track.append(otio.schema.Gap(source_range=ot.TimeRange(ot.RationalTime(0, rate),
                                                                       ot.RationalTime(start - cursor, rate))))
            asset = ti.assets[clip["asset"]]
            info = asset.info
            if info is not None and not clip["image"]:
                seconds = info.video.duration if info.video is not None and kind == "video" else info.duration
                length = ot.TimeRange(ot.RationalTime(0, src_rate), ot.RationalTime(round(seconds * src_rate), src_rate))
            else:  # a still: as long as it is shown (editors need a length for every media)
                length = ot.TimeRange(ot.RationalTime(0, src_rate), ot.RationalTime(first + frames, src_rate))
            ref = otio.schema.ExternalReference(target_url=urls[clip["asset"]], available_range=length,
                                                metadata=_timecode_metadata(clip["rate"]))
            ref.name = PurePosixPath(asset.path).name
            item = otio.schema.Clip(name=PurePosixPath(asset.path).stem, media_reference=ref,
                                    source_range=ot.TimeRange(ot.RationalTime(first, src_rate),
                                                              ot.RationalTime(frames, src_rate)),
                                    metadata={"ave": {"asset": clip["asset"], "track": t, "clip": clip["clip"]}})
            track.append(item)
            previous, previous_rate = item, clip["rate"]
            cursor = start + duration
        timeline.tracks.append(track)
    return timeline


def for_format(timeline: Any, fmt: str) -> Any:
    """The timeline as ``fmt`` can hold it: an EDL has one video track and one rate.

    In the EDL, a clip from a source at another rate (25 fps in a 29.97 edit) has its in point and
    length counted at the edit's rate (CMX 3600 timecodes have one rate): the editor conforms it.
    """
    if fmt != "edl":
        return timeline
    otio = otio_adapters.load()
    ot = otio.opentime
    edl = timeline.deepcopy()
    rate = float(timeline.global_start_time.rate)
    videos = [i for i, tr in enumerate(edl.tracks) if tr.kind == otio.schema.TrackKind.Video]
    for i in reversed(videos[1:]):
        del edl.tracks[i]
    for clip in edl.find_clips():
        sr = clip.source_range
        if abs(sr.start_time.rate - rate) > 1e-6:
            frames = round(sr.duration.to_seconds() * rate)
            clip.source_range = ot.TimeRange(ot.RationalTime(round(sr.start_time.to_seconds() * rate), rate),
                                             ot.RationalTime(frames, rate))
    return edl


def _written(timeline: Any, fmt: str, size: tuple[int, int] | None = None) -> str:
    otio = otio_adapters.load()
    adapter = FORMATS[fmt][0]
    if fmt == "edl":
        return otio.adapters.write_to_string(timeline, adapter, rate=float(timeline.global_start_time.rate))
    text = otio.adapters.write_to_string(timeline, adapter)
    if fmt == "fcpxml" and size is not None:
        # The picture size of the sequence's format (the adapter leaves it out; Resolve and FCP read it).
        text = re.sub(r'(<format id="[^"]+" frameDuration="[^"]+") name=""', rf'\1 width="{size[0]}" height="{size[1]}"',
                      text, count=1)
    return text


def read_back(text: str, fmt: str, rate: float) -> Any:
    """The file read with OpenTimelineIO (its first timeline)."""
    otio = otio_adapters.load()
    kwargs = {"rate": rate} if fmt == "edl" else {}
    result = otio.adapters.read_from_string(text, FORMATS[fmt][0], **kwargs)
    if not isinstance(result, otio.schema.Timeline):
        result = next(result.find_children(descended_from_type=otio.schema.Timeline))
    return result


def summary(timeline: Any, kind: str = "video", *, edl: bool = False) -> list[list[tuple[str, int, int]]]:
    """Per track of ``kind``: (media file, in, frames) of each clip, in order, at each clip's own rate.

    ``edl``: as CMX 3600 states a dissolve, which an EDL reads back as: the outgoing clip ends where
    the dissolve starts, the incoming one starts there (at its real in point) and keeps its length.
    """
    otio = otio_adapters.load()
    tracks = timeline.video_tracks() if kind == "video" else timeline.audio_tracks()
    out = []
    for track in tracks:
        clips: list[list[Any]] = []
        pending = 0
        for item in track:
            if isinstance(item, otio.schema.Transition):
                pending = round(item.in_offset.value)
                if edl and clips:
                    clips[-1][2] -= pending
                continue
            if not isinstance(item, otio.schema.Clip):
                continue
            sr = item.source_range
            url = getattr(item.media_reference, "target_url", "") or ""
            entry = [PurePosixPath(url).name, round(sr.start_time.value), round(sr.duration.value)]
            if edl and pending:
                entry[1] -= pending
                entry[2] += pending
            pending = 0
            clips.append(entry)
        out.append([tuple(c) for c in clips])  # type: ignore[misc]
    return out  # type: ignore[return-value]


@operator("export.timelines", weight=1)
def timelines(timeline: RenderInput, formats: Any, *, params: TimelineParams, ctx: OpContext) -> dict[str, StoredFile]:
    """Write the edit in each asked-for format, each read back with OpenTimelineIO and checked."""
    wanted = formats.formats if isinstance(formats, TimelineFormats) else list(formats or [])
    otio_timeline = build_timeline(timeline, params.title, params.media_base_url)
    rate = float(timeline.spec.fps)
    expected = summary(otio_timeline)
    files: dict[str, StoredFile] = {}
    for fmt in wanted:
        written = for_format(otio_timeline, fmt)
        want = summary(written, edl=fmt == "edl")
        # (a copy: the CMX writer folds transitions into the clips it is given)
        text = _written(written.deepcopy(), fmt, (timeline.spec.width, timeline.spec.height))
        back = summary(read_back(text, fmt, rate))
        if back != want:
            raise MediaError(f"Timeline: the {fmt} file reads back as {back} instead of {want}")
        _, ext, content_type = FORMATS[fmt]
        path = ctx.output_path(f"export/timeline/{_slug(params.title)}.{ext}")
        with ctx.storage.writing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        clips = sum(len(t) for t in want)
        files[fmt] = StoredFile(path=path, kind="timeline_file", content_type=content_type,
                                size=ctx.storage.size(path), meta={"format": fmt, "clips": clips, "fps": rate,
                                                                   "tracks": len(want)})
        if fmt == "edl" and len(expected) > 1:
            ctx.log("Timeline: the EDL holds the first video track only (CMX 3600 has one)")
        if fmt == "edl" and want != expected[:1]:
            ctx.log("Timeline: in the EDL, clips from sources at another rate are counted at the edit's rate")
    ctx.log(f"Timeline files: {', '.join(wanted)} ({sum(len(t) for t in expected)} video clips at "
            f"{rate:.3f} fps), each read back with OpenTimelineIO to the same clips")
    ctx.progress(1.0)
    return files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "timeline"
