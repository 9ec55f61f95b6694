"""``media.join_chunks``: remux the encoded chunks and the audio track into one proxy per rendition.

Nothing is re-encoded: packets are copied, interleaved by time, into a faststart MP4
(moov first, so a browser can start playing before the download ends). Every output
is then demuxed again and checked: exact frame count, and audio/video alignment.

Audio-only sources have no chunks; their proxy is the AAC track itself, copied to
``proxy/audio_proxy.m4a`` with kind ``"proxy"`` so the editor always finds one.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from typing import Any

import av
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Damage, Progress, mp4_options, open_input
from operators.media.info import ChunkOutput, MediaInfo
from operators.media.probe import frames_end
from operators.media.transcode import cfr_frames
from operators.registry import operator
from operators.types import StoredFile

__all__ = ["JoinParams", "check_parts", "concat_video_packets", "join_chunks", "measure_output", "moov_first",
           "made_constant_rate", "output_frame_count", "retime_packets", "sync_drift"]


class JoinParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Re-read each proxy and check frame count and A/V alignment (cheap: demux only).
    verify: bool = True
    #: Allowed change of the audio/video offset, in frame durations.
    max_drift_frames: float = Field(1.0, gt=0)


def check_parts(parts: list[ChunkOutput], info: MediaInfo) -> list[ChunkOutput]:
    """The parts in chunk order, after checking they tile the video stream exactly."""
    video = info.video
    assert video is not None
    ordered = sorted(parts, key=lambda p: p.chunk.index)
    count = len(ordered)
    indexes = [p.chunk.index for p in ordered]
    if indexes != list(range(count)) or any(p.chunk.count != count for p in ordered):
        raise MediaError(f"The chunks to join are incomplete or duplicated: got chunk numbers {indexes} of {count}")
    if made_constant_rate(ordered, info):
        return _check_constant_rate(ordered, info)
    if ordered[0].chunk.start_pts != video.start_pts:
        raise MediaError("The first chunk does not start at the source's first frame")
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.chunk.end_pts != b.chunk.start_pts:
            kind = "gap" if a.chunk.end_pts < b.chunk.start_pts else "overlap"
            raise MediaError(f"Chunks {a.chunk.index + 1} and {b.chunk.index + 1} do not meet: there is a {kind} at {a.chunk.end:.3f}s")
    for p in ordered:
        c = p.chunk
        if p.frame_count != c.frame_count or not (c.start_pts <= p.first_pts <= p.last_pts < c.end_pts):
            raise MediaError(
                f"Chunk {c.index + 1}/{count} holds {p.frame_count} frames where the source has {c.frame_count} "
                f"({c.start:.3f}s–{c.end:.3f}s)"
            )
    total = sum(p.frame_count for p in ordered)
    if total != video.frame_count:
        raise MediaError(f"The chunks hold {total} frames but the source has {video.frame_count}")
    names = [sorted(r.rendition for r in p.renditions) for p in ordered]
    if any(n != names[0] for n in names):
        raise MediaError("The chunks were not all encoded at the same renditions")
    return ordered


def _check_constant_rate(ordered: list[ChunkOutput], info: MediaInfo) -> list[ChunkOutput]:
    """A variable-rate source's parts (made constant-rate): they tile output frames ``0 .. cfr_frames`` in order."""
    video = info.video
    assert video is not None
    expected = 0
    for p in ordered:
        if p.frame_count and (p.first_pts != expected or p.last_pts != expected + p.frame_count - 1):
            raise MediaError(f"Chunk {p.chunk.index + 1}/{p.chunk.count} holds frames {p.first_pts}–{p.last_pts} "
                             f"where frame {expected} comes next")
        expected += p.frame_count
    if expected != cfr_frames(video):
        raise MediaError(f"The chunks hold {expected} frames but the source has {cfr_frames(video)} at "
                         f"{float(video.rate):.3f} fps")
    return ordered


def made_constant_rate(parts: list[ChunkOutput], info: MediaInfo) -> bool:
    """The parts of a variable-rate source were made constant-rate (their time base is 1/rate, not the source's)."""
    video = info.video
    assert video is not None
    return video.is_vfr and bool(parts) and Fraction(parts[0].time_base) != video.tb


def output_frame_count(info: MediaInfo, constant_rate: bool = False) -> int:
    """The frames of a proxy of ``info``: the source's, or (``constant_rate``) a variable-rate source's at its average
    rate."""
    video = info.video
    assert video is not None
    return cfr_frames(video) if constant_rate else video.frame_count


def _offset(seconds: Fraction, time_base: Fraction) -> int:
    return round(seconds / time_base)


def concat_video_packets(ctx: OpContext, parts: list[tuple[str, str]], origin: Fraction,
                         out_stream: Any) -> Iterator[tuple[float, int, Any]]:
    """The video packets of encoded parts, in order, moved onto ``out_stream`` with ``origin`` as time 0.

    ``parts`` are ``(storage path, label)``; the label names a part in errors ("Encoded chunk 3").
    One avcC/hvcC box serves the whole track, so every part must share the first one's extradata.
    """
    extradata = None
    first = parts[0][1] if parts else ""
    for path, label in parts:
        with ctx.storage.reading(path) as local, open_input(local, f"{label} could not be read") as c:
            stream = c.streams.video[0]
            if extradata is None:
                extradata = stream.codec_context.extradata
            elif stream.codec_context.extradata != extradata:
                raise MediaError(f"{label} was made with different encoder settings than {first.lower()}")
            yield from retime_packets(c, stream, origin, out_stream, 0)


def _audio_packets(container: Any, origin: Fraction, out_stream: Any) -> Iterator[tuple[float, int, Any]]:
    return retime_packets(container, container.streams.audio[0], origin, out_stream, 1)


def retime_packets(container: Any, stream: Any, origin: Fraction, out_stream: Any,
             order: int) -> Iterator[tuple[float, int, Any]]:
    """``stream``'s packets moved to ``out_stream`` with ``origin`` as time 0, keyed for interleaving."""
    shift = _offset(origin, stream.time_base)
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        packet.pts -= shift
        packet.dts -= shift
        packet.stream = out_stream
        yield float(packet.dts * packet.time_base), order, packet


def measure_output(local: Any) -> dict[str, Any]:
    """Frame count and stream spans of a written proxy, from its packets."""
    result: dict[str, Any] = {}
    with open_input(local, "The joined proxy could not be read back") as c:
        v = c.streams.video[0]
        packets = sorted((p.pts, p.duration or 0) for p in c.demux(v) if p.size)
        pts = [p for p, _ in packets]
        result["frames"] = len(pts)
        result["video_start"] = float(min(pts) * v.time_base) if pts else 0.0
        # From the timestamps, by the rule the source's length was taken with (a VFR last frame's
        # stored duration is our encoder's guess).
        end = frames_end(pts, packets[-1][1], v.time_base)[1] if pts else 0
        result["video_duration"] = float((end - pts[0]) * v.time_base) if pts else 0.0
        if c.streams.audio:
            a = c.streams.audio[0]
            result["audio_start"] = float((a.start_time or 0) * a.time_base)
            result["audio_duration"] = float(a.duration * a.time_base) if a.duration else 0.0
        result["moov_first"] = moov_first(local)
    return result


def moov_first(local: Any) -> bool:
    """True when an MP4's index (moov) comes before its media data, so players start at once.

    Walks the top-level boxes by their sizes; a box claiming fewer than 8 bytes (a damaged file)
    ends the walk, where seeking by ``size - 8`` would loop on it forever.
    """
    with open(local, "rb") as f:
        while header := f.read(8):
            if len(header) < 8:
                return False
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:
                size = int.from_bytes(f.read(8), "big") - 8
            if size < 8:
                return False
            f.seek(size - 8, 1)
    return False


def _audio_only(audio: StoredFile, info: MediaInfo, ctx: OpContext) -> list[StoredFile]:
    path = ctx.output_path("proxy/audio_proxy.m4a")
    with ctx.storage.reading(audio.path) as local, ctx.storage.writing(path) as tmp:
        shutil.copyfile(local, tmp)
    meta = {"audio_only": True, "height": 0, "width": 0, "frame_count": 0, "duration": info.audio.duration if info.audio else info.duration}
    ctx.log("Audio-only source: the proxy is the AAC track")
    return [StoredFile(path=path, kind="proxy", content_type="audio/mp4", size=ctx.storage.size(path), meta=meta)]


@operator("media.join_chunks", weight=2)
def join_chunks(
    parts: list[ChunkOutput],
    info: MediaInfo,
    audio: StoredFile | None = None,
    *,
    params: JoinParams,
    ctx: OpContext,
) -> list[StoredFile]:
    """Remux the chunks (+ audio) into one faststart MP4 per rendition, and verify it."""
    video = info.video
    if video is None or not parts:
        if video is not None:
            raise MediaError("The source has video but no encoded chunks were given to join")
        return _audio_only(audio, info, ctx) if audio is not None else []
    ordered = check_parts(parts, info)
    damaged = sum(p.damaged for p in ordered)
    # Each chunk is held to the limit alone; the whole source is held to it here.
    Damage.check(damaged, video.frame_count, "video frames")
    if damaged:
        ctx.log(f"{damaged} of the source's {video.frame_count} video frames were damaged and could not be decoded: "
                "the frame before each is shown in its place")
    origin = Fraction(video.start_pts) * video.tb
    # A variable-rate source's chunks are constant-rate already, numbered from 0 in 1/rate.
    cfr = made_constant_rate(ordered, info)
    video_origin, tb = (Fraction(0), 1 / video.rate) if cfr else (origin, video.tb)
    frames = output_frame_count(info, cfr)
    progress = Progress(ctx)
    outputs: list[StoredFile] = []
    renditions = sorted({r.rendition for r in ordered[0].renditions}, reverse=True)
    for n, rendition in enumerate(renditions):
        files = [next(r for r in p.renditions if r.rendition == rendition) for p in ordered]
        path = ctx.output_path(f"proxy/{rendition}p.mp4")
        with ctx.storage.writing(path) as tmp:
            with ExitStack() as stack:
                out = stack.enter_context(av.open(str(tmp), "w", format="mp4", options=mp4_options(tb, faststart=True)))
                with ctx.storage.reading(files[0].path) as first, open_input(first) as c0:
                    out_v = out.add_stream_from_template(c0.streams.video[0])
                out_v.time_base = tb
                if video.rotation:
                    out_v.set_display_rotation(video.rotation)
                streams = [concat_video_packets(ctx, [(f.path, f"Encoded chunk {i + 1}") for i, f in enumerate(files)],
                                                video_origin, out_v)]
                if audio is not None:
                    audio_local = stack.enter_context(ctx.storage.reading(audio.path))
                    ain = stack.enter_context(open_input(audio_local, "The encoded audio track could not be read"))
                    out_a = out.add_stream_from_template(ain.streams.audio[0])
                    streams.append(_audio_packets(ain, origin, out_a))
                # Interleaved by time as we go, so the muxer never buffers a whole stream.
                for muxed, (_, _, packet) in enumerate(heapq.merge(*streams, key=lambda t: (t[0], t[1]))):
                    out.mux(packet)
                    progress((n + min(0.99, muxed / (video.frame_count * 2))) / len(renditions))
            if params.verify:
                _verify(measure_output(tmp), info, audio is not None, rendition, params, frames)
        meta = {
            "rendition": rendition,
            "height": files[0].height,
            "width": files[0].width,
            "frame_count": frames,
            "duration": video.duration,
            "fps": video.fps,
            "has_audio": audio is not None,
        }
        outputs.append(
            StoredFile(path=path, kind="proxy", content_type="video/mp4", size=ctx.storage.size(path), meta=meta)
        )
        ctx.log(f"Joined {len(files)} chunks into the {rendition}p proxy ({frames} frames"
                + (f", constant-rate at {float(video.rate):.3f} fps from a variable-rate source)" if cfr else ")"))
    progress.done()
    return outputs


def _verify(measured: dict[str, Any], info: MediaInfo, with_audio: bool, rendition: int, params: JoinParams,
            frames: int) -> None:
    video = info.video
    assert video is not None
    name = f"The {rendition}p proxy"
    if measured["frames"] != frames:
        raise MediaError(f"{name} has {measured['frames']} frames but the source has {frames}")
    if not measured["moov_first"]:
        raise MediaError(f"{name} is not faststart: its index is not at the front of the file")
    if with_audio and info.audio is not None:
        if "audio_start" not in measured:
            raise MediaError(f"{name} lost its audio track")
        frame = video.frame_duration * params.max_drift_frames
        drift = sync_drift(info, measured["video_start"], measured["video_duration"], measured["audio_start"],
                           measured["audio_duration"])
        if drift >= frame:
            raise MediaError(
                f"{name} drifts out of sync: audio moves {drift * 1000:.1f} ms against video "
                f"(allowed: under {frame * 1000:.1f} ms)"
            )


def sync_drift(info: MediaInfo, video_start: float, video_duration: float, audio_start: float,
               audio_duration: float) -> float:
    """How far (seconds) an output's sound moved against its picture, at either end, from the source's timestamps.

    Both ends are compared with the source's own offsets, read from its timestamps (never from frame counts
    times a rate, which a variable-rate source breaks). Outputs start at the first video frame, so sound that
    starts earlier in the source (an MPEG-TS capture's, say) is cut there: at the start only the part of the
    offset after the first frame is kept, and the end, which no cut moves, measures what the cut preserved.
    """
    video, audio = info.video, info.audio
    assert video is not None and audio is not None
    src_offset = audio.start_seconds - float(video.start_pts * video.tb)
    src_end = src_offset + audio.duration - video.duration
    out_offset = audio_start - video_start
    out_end = out_offset + audio_duration - video_duration
    return max(abs(max(out_offset, 0.0) - max(src_offset, 0.0)), abs(out_end - src_end))
