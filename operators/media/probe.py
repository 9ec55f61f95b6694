"""``media.probe``: what a source holds, with an exact frame count from demuxing (no decode)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, frame_rotation, open_input
from operators.media.info import AudioStreamInfo, MediaInfo, VideoStreamInfo
from operators.registry import operator
from operators.types import SourceRef

__all__ = ["frames_end", "probe", "read_video_packets"]


def read_video_packets(container: Any, stream: Any, progress: Progress | None = None) -> list[tuple[int, int, bool, int]]:
    """``(pts, seek_ts, is_keyframe, duration)`` of every video packet, in decode order.

    Demuxing only reads the container, so this costs a small fraction of a decode. Packets
    the demuxer flags as discarded (trimmed by an edit list) never become frames, so they
    are left out; ``seek_ts`` is what the demuxer's index holds (dts in MP4, pts in Matroska),
    and seeking to ``min(pts, dts)`` backwards always lands at or before the keyframe.
    """
    total = float(container.duration or 0) / av.time_base if container.duration else 0.0
    tb = stream.time_base
    packets: list[tuple[int, int, bool, int]] = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            raise MediaError("The video stream has packets without timestamps, so it cannot be split exactly")
        dts = packet.dts if packet.dts is not None else pts
        packets.append((pts, min(pts, dts), packet.is_keyframe, packet.duration or 0))
        if progress is not None and total:
            progress(min(0.99, float(pts * tb) / total))
    return packets


def frames_end(pts: list[int], last_duration: int, tb: Fraction) -> tuple[bool, int]:
    """Whether frames at ``pts`` (sorted) come at a variable rate, and when the last one ends.

    The one rule for sources and the outputs checked against them, from timestamps alone: the last frame
    lasts its stored duration, or (none stored) the shortest gap; but a variable-rate stream's last frame
    lasts as long as the one before it, because its stored duration is the recorder's (or our encoder's)
    nominal guess, 1/30 s after a stretch at 10 fps, and the shortest gap would cut the end short too
    (a 30 → 60 → 10 fps recording lost 83 ms and, on paper, its sync).
    """
    deltas = {b - a for a, b in zip(pts, pts[1:], strict=False)}
    # Timestamps rounded to a coarse time base jitter by a tick; that is not VFR.
    is_vfr = bool(deltas) and max(deltas) - min(deltas) > max(1, int(0.002 / tb))
    if is_vfr:
        return True, pts[-1] + (pts[-1] - pts[-2])
    return False, pts[-1] + (last_duration or (min(deltas) if deltas else 1))


def _rate(value: Fraction | None) -> str | None:
    return f"{value.numerator}/{value.denominator}" if value else None


def _first_frame(container: Any, stream: Any) -> tuple[int, bool]:
    """The display rotation, and whether the pictures are interlaced, from the first decoded frame.

    The display matrix lives in the stream's side data, which PyAV exposes on decoded frames; one
    frame is cheap next to the demux pass. Interlacing shows on the frame, or as the field order the
    container or decoder states (1080i broadcast, DV, camcorder footage).
    """
    fields = getattr(stream.codec_context, "field_order", 0) or 0
    # AVFieldOrder: 0 unknown, 1 progressive, 2-5 the interlaced orders (TT, BB, TB, BT).
    interlaced = 2 <= fields <= 5
    try:
        container.seek(0)
        for frame in container.decode(stream):
            return frame_rotation(frame.rotation), interlaced or bool(frame.interlaced_frame)
    except av.error.FFmpegError:
        return 0, interlaced
    return 0, interlaced


def _video_info(container: Any, stream: Any, progress: Progress) -> VideoStreamInfo:
    cc = stream.codec_context
    packets = read_video_packets(container, stream, progress)
    if not packets:
        raise MediaError("The source's video stream holds no frames: the file is empty or truncated")
    if stream.frames and len(packets) < stream.frames:
        raise MediaError(
            f"The source file is truncated: its index lists {stream.frames} video frames "
            f"but only {len(packets)} are present"
        )
    tb: Fraction = stream.time_base
    pts = sorted(p[0] for p in packets)
    last_duration = packets[max(range(len(packets)), key=lambda i: packets[i][0])][3]
    is_vfr, end = frames_end(pts, last_duration, tb)
    duration = float((end - pts[0]) * tb)
    nominal = stream.base_rate or stream.average_rate or stream.guessed_rate
    if is_vfr:
        # The rate a variable-rate source is converted to (proxies and exports are constant-rate): its
        # average, frames over duration from the timestamps, so the output keeps the source's frame count
        # and length. FFmpeg's own average counts the stored last duration, which VFR recorders guess.
        nominal = (Fraction(len(pts)) / ((end - pts[0]) * tb)).limit_denominator(1001)
    if nominal is None:
        nominal = Fraction(len(pts), 1) / Fraction(duration).limit_denominator(1_000_000) if duration else Fraction(25)
    rotation, interlaced = _first_frame(container, stream)
    sar = stream.sample_aspect_ratio or Fraction(1)
    disp_w = max(1, round(cc.width * sar)) if sar > 0 else cc.width
    disp_w, disp_h = (cc.height, disp_w) if rotation % 180 else (disp_w, cc.height)
    return VideoStreamInfo(
        index=stream.index,
        codec=cc.name,
        width=cc.width,
        height=cc.height,
        display_width=disp_w,
        display_height=disp_h,
        rotation=rotation,
        fps=float(nominal),
        fps_fraction=_rate(nominal) or "25/1",
        avg_frame_rate=_rate(stream.average_rate),
        real_frame_rate=_rate(stream.base_rate),
        is_vfr=is_vfr,
        frame_count=len(packets),
        interlaced=interlaced,
        pix_fmt=cc.pix_fmt,
        # Reordered timestamps in decode order are the mark of B-frames, whatever the header says.
        has_b_frames=bool(cc.has_b_frames) or any(b[0] < a[0] for a, b in zip(packets, packets[1:], strict=False)),
        time_base=_rate(tb) or "1/1",
        start_pts=pts[0],
        duration=duration,
        bit_rate=cc.bit_rate or None,
    )


def _check_audio_complete(container: Any, stream: Any) -> None:
    """Fail a cut-off audio-only file here, with the reason, rather than mid-encode later.

    With video, a cut file loses video packets too and the video check finds it; without,
    this demux (no decode) is the only pass, and it compares the index with what is there.
    """
    if not stream.frames:
        return  # no index to compare with (ADTS, WAV, Ogg): the decoders meet the end as it is
    present = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                present += 1
    except av.error.FFmpegError as exc:
        raise MediaError(
            "The source file is truncated or corrupt: "
            f"its audio breaks off after {present} of {stream.frames} packets"
        ) from exc
    if present < stream.frames:
        raise MediaError(
            f"The source file is truncated: its index lists {stream.frames} audio packets "
            f"but only {present} are present"
        )


def _audio_info(container: Any, stream: Any) -> AudioStreamInfo:
    cc = stream.codec_context
    tb: Fraction = stream.time_base
    if stream.duration:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = _demuxed_duration(container, stream)
    return AudioStreamInfo(
        index=stream.index,
        codec=cc.name,
        sample_rate=cc.sample_rate,
        channels=cc.channels,
        layout=cc.layout.name,
        time_base=_rate(tb) or "1/1",
        start_pts=stream.start_time or 0,
        duration=duration,
        bit_rate=cc.bit_rate or None,
        profile=cc.profile or None,
    )


def _demuxed_duration(container: Any, stream: Any) -> float:
    """A stream's length read from its packets, for a container that states none: a browser's MediaRecorder
    writes WebM while it records, so it has no duration and no cues (and FFmpeg then reports 0)."""
    tb: Fraction = stream.time_base
    first: int | None = None
    end = 0
    try:
        container.seek(0)
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            end = max(end, packet.pts + (packet.duration or 0))
    except av.error.FFmpegError:
        pass  # a damaged tail: what was read before it is the length
    return float((end - first) * tb) if first is not None else 0.0


@operator("media.probe", weight=1, version=1)
def probe(source: SourceRef, *, ctx: OpContext) -> MediaInfo:
    """Describe a source: container, duration, streams, exact video frame count."""
    progress = Progress(ctx)
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        streams: list[VideoStreamInfo | AudioStreamInfo] = []
        video = next((s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic), None)
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError("The source file has no audio or video stream")
        if video is not None:
            streams.append(_video_info(container, video, progress))
        if audio is not None:
            if video is None:
                _check_audio_complete(container, audio)
            streams.append(_audio_info(container, audio))
        duration = container.duration / av.time_base if container.duration else max(
            (getattr(s, "duration", 0.0) for s in streams), default=0.0
        )
        info = MediaInfo(
            path=source.path,
            format=container.format.name,
            duration=duration,
            size=local.stat().st_size,
            bit_rate=container.bit_rate or None,
            streams=streams,
        )
    v = info.video
    ctx.log(
        f"Probed {info.format}: {info.duration:.2f}s"
        + (f", video {v.codec} {v.display_width}x{v.display_height} @ {v.fps:.3f} fps, {v.frame_count} frames" if v else "")
        + (f", audio {info.audio.codec} {info.audio.sample_rate} Hz" if info.audio else "")
    )
    progress.done()
    return info
