"""``export.deliver``: one preset's file from its rendition's chunks and its audio track, verified.

Packets are copied, never re-encoded, interleaved by time (ingest's :func:`retime_packets`) into
a faststart MP4 or a WebM. Chunks at the source's rate are first checked with ingest's own
:func:`check_parts` (they tile the source's frames exactly); chunks at another rate must tile
the output's frames. The written file is then read back: the exact frame count, the duration
within a frame, A/V drift under a frame, faststart, the ``hvc1`` tag for HEVC, and a full
decode for VP9 and AV1.
"""

from __future__ import annotations

import heapq
from contextlib import ExitStack
from fractions import Fraction
from typing import Any

import av

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.audio import AudioTrack
from operators.export.encode import ChunkEncodes, EncodedPart
from operators.export.plan import Delivery, Rendition
from operators.export.verify import check_timing, decoded_frames, faststart, longer_or_shorter, measure
from operators.media._av import Progress, mp4_options, open_input
from operators.media.info import ChunkOutput, MediaInfo, RenditionFile
from operators.media.join import check_parts, concat_video_packets, retime_packets
from operators.registry import operator
from operators.types import StoredFile

__all__ = ["deliver", "rendition_parts", "video_packets"]

_CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
#: What to try when frames come out wrong: a source with damaged or variable timestamps is the usual cause.
_RESAVE = "Export again; if it happens again, re-save the source at a constant frame rate and export that."


def rendition_parts(parts: list[ChunkEncodes], rendition: Rendition, info: MediaInfo) -> list[EncodedPart]:
    """The rendition's chunk files in order, checked to hold every frame once."""
    found = sorted(((task.chunk, p) for task in parts for p in task.parts if p.rendition == rendition.key),
                   key=lambda cp: cp[1].chunk)
    what = f"the {rendition.width}x{rendition.height} {rendition.codec} video"
    if not found:
        raise MediaError(f"None of {what} was encoded (its encoding tasks did not finish): export again")
    if rendition.rate is None:
        # At the source's rate: ingest's own check (the chunks tile the source's frames, each one complete).
        check_parts([ChunkOutput(chunk=chunk, renditions=[RenditionFile(rendition=rendition.height, height=rendition.height,
                                                                        width=rendition.width, path=p.path, size=0)],
                                 frame_count=p.frames, first_pts=p.first, last_pts=p.last, duration=0.0,
                                 time_base=p.time_base) for chunk, p in found], info)
        return [p for _, p in found]
    ordered = [p for _, p in found]
    if [p.chunk for p in ordered] != list(range(ordered[0].chunks)):
        missing = sorted(set(range(ordered[0].chunks)) - {p.chunk for p in ordered})
        raise MediaError(f"Part of {what} is missing (chunks {', '.join(str(c + 1) for c in missing)} of "
                         f"{ordered[0].chunks} did not finish): export again")
    expected = 0
    for part in ordered:
        if part.frames and part.first != expected:
            raise MediaError(f"Chunk {part.chunk + 1} of {what} starts at frame {part.first} instead of {expected}, "
                             f"so frames would be lost or shown twice. {_RESAVE}")
        expected += part.frames
    if expected != rendition.frames:
        raise MediaError(f"The chunks of {what} hold {expected} frames where it should have {rendition.frames}. "
                         f"{_RESAVE}")
    return ordered


def video_packets(ctx: OpContext, parts: list[EncodedPart], origin: Fraction, out_stream: Any) -> Any:
    """The parts' packets moved onto ``out_stream``, ``origin`` (seconds) becoming time 0."""
    return concat_video_packets(ctx, [(p.path, f"Encoded chunk {p.chunk + 1}") for p in parts], origin, out_stream)


@operator("export.deliver", weight=2)
def deliver(delivery: Delivery, parts: list[ChunkEncodes], audio: list[AudioTrack], info: MediaInfo, *,
            ctx: OpContext) -> StoredFile:
    """Join the preset's rendition and audio track into its file, and verify it."""
    preset = delivery.preset
    track = next((a for a in audio if a.key == delivery.audio), None) if delivery.audio else None
    if delivery.rendition is None:
        if track is None:
            raise MediaError(f"The {preset.name} file has no sound to deliver: its audio encoding did not finish. "
                             "Export again.")
        _check_audio_file(preset.name, track, info)
        ctx.log(f"{preset.name}: {track.duration:.3f}s of {preset.audio_codec} audio — verified")
        return track.file
    r = delivery.rendition
    video = info.video
    assert video is not None
    ordered = rendition_parts(parts, r, info)
    container = preset.format or "mp4"
    path = ctx.output_path(f"export/{preset.name}.{container}")
    origin = Fraction(video.start_pts) * video.tb if r.rate is None else Fraction(0)
    audio_origin = Fraction(video.start_pts) * video.tb
    tb = video.tb if r.rate is None else 1 / r.rate
    progress = Progress(ctx)
    with ctx.storage.writing(path) as tmp:
        with ExitStack() as stack:
            options = mp4_options(tb, faststart=True) if container == "mp4" else {}
            out = stack.enter_context(av.open(str(tmp), "w", format=container, options=options))
            with ctx.storage.reading(ordered[0].path) as first, open_input(first) as c0:
                out_v = out.add_stream_from_template(c0.streams.video[0], opaque=True)
            if r.codec == "hevc":
                out_v.codec_tag = "hvc1"
            out_v.time_base = tb
            streams = [video_packets(ctx, ordered, origin, out_v)]
            if track is not None:
                local = stack.enter_context(ctx.storage.reading(track.file.path))
                ain = stack.enter_context(open_input(local, "The encoded audio track could not be read"))
                out_a = out.add_stream_from_template(ain.streams.audio[0])
                streams.append(retime_packets(ain, ain.streams.audio[0], audio_origin, out_a, 1))
            total = r.frames * (2 if track else 1)
            for n, (_, _, packet) in enumerate(heapq.merge(*streams, key=lambda t: (t[0], t[1]))):
                out.mux(packet)
                progress(min(0.8, n / max(1, total)))
        facts = _verify(preset.name, tmp, r, info, track, container)
    fps = float(r.rate or video.rate)
    meta: dict[str, object] = {
        "preset": preset.name, "format": container, "video_codec": r.codec, "audio_codec": preset.audio_codec
        if track else None, "width": r.width, "height": r.height, "fps": f"{(r.rate or video.rate)}",
        "frame_count": r.frames, "duration": r.frames / fps if r.rate else video.duration, **facts,
    }
    if track is not None and track.loudness is not None:
        meta["loudness"] = track.loudness
    ctx.log(f"{preset.name}: {r.codec} {r.width}x{r.height} @ {fps:.3f} fps, {r.frames} frames"
            + (f", {preset.audio_codec} audio" if track else ", no audio") + " — verified")
    progress.done()
    return StoredFile(path=path, kind="export", content_type=_CONTENT_TYPES[container], size=ctx.storage.size(path),
                      meta=meta)


def _verify(name: str, local: Any, r: Rendition, info: MediaInfo, track: AudioTrack | None,
            container: str) -> dict[str, object]:
    video = info.video
    assert video is not None
    fps = float(r.rate or video.rate)
    measured = measure(local, name)
    # The source's duration within one (output) frame, whatever the output's rate.
    check_timing(name, measured, info, frames=r.frames, fps=fps, duration=video.duration, with_audio=track is not None)
    facts: dict[str, object] = {}
    if container == "mp4":
        if not faststart(local):
            raise MediaError(f"The {name} file came out with its index at the end, so players would have to "
                             "download all of it before starting: export again")
        facts["faststart"] = True
    if r.codec == "hevc":
        if measured.codec_tag != "hvc1":
            raise MediaError(f"The {name} file came out tagged '{measured.codec_tag}' instead of 'hvc1', which "
                             "Apple players refuse: export again")
        facts["codec_tag"] = "hvc1"
    if r.codec in ("vp9", "av1"):
        decoded = decoded_frames(local, name)
        if decoded != r.frames:
            raise MediaError(f"The {name} file decodes to {decoded} frames where the source has {r.frames}. {_RESAVE}")
        facts["decoded_frames"] = decoded
    return facts


def _check_audio_file(name: str, track: AudioTrack, info: MediaInfo) -> None:
    audio = info.audio
    assert audio is not None
    frame = info.video.frame_duration if info.video else 1024 / track.file.meta.get("sample_rate", 48000)  # type: ignore[operator]
    if abs(track.duration - audio.duration) > frame + 1e-3:
        off = longer_or_shorter(track.duration - audio.duration)
        raise MediaError(f"The {name} file came out {off} than the source's sound ({track.duration:.3f}s against "
                         f"{audio.duration:.3f}s). The source's sound may be damaged: re-save it from your editor "
                         "and export again.")
