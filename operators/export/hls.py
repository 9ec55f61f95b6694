"""HLS: fMP4 segments per variant (``export.hls_variant``), then the master playlist (``export.hls``).

Each rung's chunk packets are copied (no re-encode) through FFmpeg's ``hls`` muxer into fMP4
segments of ``segment_seconds``; the audio is one shared rendition (``EXT-X-MEDIA``). Every
variant is its own Dask task, and checks itself as a player would read it: its playlist parses
with ``m3u8``, every segment (init + media) starts on a keyframe and decodes with PyAV, and the
frame count and total duration match the source. The rungs were encoded from the same decoded
frames with keyframes forced on the same frames, so every variant cuts its segments at the same
times; the package task checks that they do (segment boundaries and keyframes line up) and writes
the master playlist with ``BANDWIDTH`` (the peak segment bitrate, measured, video plus audio),
``AVERAGE-BANDWIDTH``, ``RESOLUTION``, ``FRAME-RATE`` and ``CODECS`` (read from the H.264
parameter sets), then parses it back.

Start and end (issue 19): fMP4 keeps no negative times (``tfdt`` is unsigned), yet H.264 with
B-frames decodes its first packets before its first frame shows, and AAC plays 1024 samples of
encoder priming before its first sample. Every variant is therefore moved later by the same
amount (:func:`package_start`: the larger of the two, read from the package's first rung and its
audio track, so the separate tasks agree without talking), and written exactly as given: no edit
lists, which hls.js and MSE players ignore while Safari applies them, so any edit would play
the tracks apart in one of them. The first video frame and the first audible sample then show
at the same time in every player (the priming plays just before, ahead of any picture). The
audio rendition ends on a whole AAC frame, so it may run up to one frame (21.3 ms at 48 kHz)
past the video; its check allows exactly that, plus the priming, and no more.

Each file is an asset; the playlists name each other by relative URI (``720p/index.m3u8``), which
each asset keeps in ``meta.uri``, so the package plays as it is from the media root, a bucket or
a CDN. The master lists them all in ``meta.files``: the API serves each at
``/assets/{master}/{uri}``, where a player resolving the master's relative URIs looks for it.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import m3u8
from pydantic import BaseModel, ConfigDict

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.audio import AudioTrack
from operators.export.deliver import rendition_parts, video_packets
from operators.export.encode import ChunkEncodes
from operators.export.plan import HlsPackage, HlsVariant, Rendition
from operators.export.verify import first_time, longer_or_shorter
from operators.media._av import Progress, open_input
from operators.media.info import MediaInfo
from operators.media.join import retime_packets
from operators.registry import operator
from operators.types import Frozen, StoredFile

__all__ = ["HlsOutput", "HlsParams", "VariantOutput", "avc1_codec", "hls_package", "hls_variant", "package_start",
           "variant_name"]

#: The fMP4 segments hold each track's times as given: ``frag_discont`` makes the first ``tfdt`` the first
#: packet's decode time (not 0), without edit lists, and nothing is shifted (package_start made every
#: time non-negative already).
_SEGMENT_OPTIONS = "movflags=+frag_discont:use_editlist=0:avoid_negative_ts=disabled"


class HlsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Decode every frame of every segment ("all"), or only each segment's first frame ("first").
    verify_decode: Literal["all", "first"] = "all"


class VariantOutput(Frozen):
    """One variant (or the audio rendition) of a package, segmented, stored and verified."""

    package: str
    index: int
    name: str
    rendition: Rendition | None = None
    codec: str
    channels: int = 2
    files: list[StoredFile]
    #: Per segment: EXTINF seconds and bytes; where each starts; every keyframe's time.
    segments: list[tuple[float, int]]
    starts: list[float]
    keyframes: list[float] = []
    frames: int = 0
    #: Seconds into the package where its first frame (the audio: its first audible sample) plays.
    start: float = 0.0

    @property
    def peak_bitrate(self) -> int:
        return round(max((size * 8 / max(d, 1e-3) for d, size in self.segments), default=0.0))

    @property
    def average_bitrate(self) -> int:
        total = sum(d for d, _ in self.segments)
        return round(sum(size for _, size in self.segments) * 8 / max(total, 1e-3))

    @property
    def duration(self) -> float:
        return sum(d for d, _ in self.segments)


class HlsOutput(Frozen):
    master: StoredFile
    files: list[StoredFile]


def avc1_codec(extradata: bytes | None) -> str:
    """``avc1.PPCCLL`` from an avcC record: profile, constraint flags, level."""
    if not extradata or len(extradata) < 4 or extradata[0] != 1:
        return "avc1.640028"
    return f"avc1.{extradata[1]:02X}{extradata[2]:02X}{extradata[3]:02X}"


def variant_name(r: Rendition | None) -> str:
    return "audio" if r is None else f"{min(r.width, r.height)}p"


def _mux(target: Path, segment_seconds: float, template: Any, packets: Any) -> None:
    """One media playlist and its fMP4 segments from a template stream and a packet feed."""
    target.mkdir(parents=True, exist_ok=True)
    options = {"hls_time": f"{segment_seconds:g}", "hls_playlist_type": "vod", "hls_segment_type": "fmp4",
               "hls_segment_filename": str(target / "seg_%05d.m4s"), "hls_fmp4_init_filename": "init.mp4",
               "hls_flags": "independent_segments", "hls_segment_options": _SEGMENT_OPTIONS}
    with av.open(str(target / "index.m3u8"), "w", format="hls", options=options) as out:
        stream = out.add_stream_from_template(template, opaque=True)
        stream.time_base = template.time_base
        for _, _, packet in packets(stream):
            out.mux(packet)
    # The muxer rounds the target duration half to even (4.5 s -> 4); a segment rounded to the nearest
    # second must not exceed it, so it is the longest segment rounded up.
    playlist = target / "index.m3u8"
    text = playlist.read_text()
    longest = max((float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", text)), default=0.0)
    playlist.write_text(re.sub(r"#EXT-X-TARGETDURATION:\d+", f"#EXT-X-TARGETDURATION:{math.ceil(longest)}", text))


def _what(name: str) -> str:
    return f"The HLS {name} rendition" if name == "audio" else f"The HLS {name} video"


def _read_segment(data: bytes, name: str, seg: str, decode: str, video: bool) -> tuple[int, list[float], float]:
    """Frames (packets), keyframe times and first time of one segment; a video one must start on a keyframe."""
    try:
        with av.open(io.BytesIO(data), format="mp4") as c:
            stream = c.streams.video[0] if video else c.streams.audio[0]
            packets = [p for p in c.demux(stream) if p.size]
            if not packets or (video and not packets[0].is_keyframe):
                raise MediaError(f"{_what(name)}'s segment {seg} does not start with a keyframe, so players cannot "
                                 "start or switch there. Export again; if it happens again, make the preset's "
                                 "segment_seconds a whole multiple of its gop_seconds.")
            keys = [round(float(p.pts * stream.time_base), 3) for p in packets if p.is_keyframe] if video else []
            first = float(min(p.pts for p in packets) * stream.time_base)
            wanted = len(packets) if decode == "all" and video else 1
            decoded = 0
            for packet in packets:
                decoded += len(stream.codec_context.decode(packet))
                if decoded >= wanted:
                    break
            if decoded < wanted:
                decoded += len(stream.codec_context.decode(None))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{_what(name)}'s segment {seg} does not decode ({exc}). Export again; if it happens "
                         "again, the source may be damaged: re-save it from your editor and export that.") from None
    if decoded < wanted:
        raise MediaError(f"{_what(name)}'s segment {seg} decodes to {decoded} frames instead of {wanted}. Export "
                         "again; if it happens again, re-save the source from your editor and export that.")
    return len(packets), keys, first


def _check_variant(folder: Path, name: str, decode: str, video: bool) -> tuple[list[tuple[float, int]], list[float],
                                                                                list[float], int, float]:
    """Parse the playlist, read and decode every segment.

    Returns (EXTINF, bytes) of each, their starts, every keyframe, the frames and the first time.
    """
    playlist = m3u8.load(str(folder / "index.m3u8"))
    if not playlist.segment_map or not playlist.segments or not playlist.is_endlist:
        raise MediaError(f"{_what(name)}'s playlist came out without its init segment, segments or end: export again")
    init = (folder / playlist.segment_map[0].uri).read_bytes()
    segments, starts, keys, frames, t, first = [], [], [], 0, 0.0, 0.0
    for n, seg in enumerate(playlist.segments):
        data = (folder / seg.uri).read_bytes()
        count, seg_keys, seg_first = _read_segment(init + data, name, seg.uri, decode, video)
        first = seg_first if n == 0 else first
        segments.append((float(seg.duration), len(data)))
        starts.append(round(t, 3))
        t += float(seg.duration)
        frames += count
        keys += seg_keys
    return segments, starts, keys, frames, first


def _store(root: Path, package: str, ctx: OpContext, variant: str | None) -> list[StoredFile]:
    types = {".m3u8": ("application/vnd.apple.mpegurl", "hls_playlist"), ".mp4": ("video/mp4", "hls_init"),
             ".m4s": ("video/iso.segment", "hls_segment")}
    files = []
    for local in sorted(p for p in root.rglob("*") if p.is_file()):
        uri = local.relative_to(root).as_posix()
        path = ctx.output_path(f"export/{package}/{uri}")
        ctx.storage.put_file(local, path)
        content_type, kind = types.get(local.suffix, ("application/octet-stream", "hls_file"))
        if uri == "master.m3u8":
            kind = "hls"
        files.append(StoredFile(path=path, kind=kind, content_type=content_type, size=local.stat().st_size,
                                meta={"uri": uri, "preset": package, "variant": variant}))
    return files


def package_start(variant: HlsVariant, parts: list[ChunkEncodes], audio: list[AudioTrack], info: MediaInfo,
                  ctx: OpContext) -> tuple[Fraction, Fraction]:
    """Seconds by which every variant of the package moves later, and the audio track's priming.

    The first rung's first chunk decodes its first packets before its first frame shows (x264
    with B-frames: two frames early), and the audio track's first packet is the encoder's
    priming, before its first sample (``AudioTrack.start``); moved later by the larger of the
    two, no time is negative and no track moves against another.
    """
    video = info.video
    assert video is not None
    origin, lift, priming = Fraction(video.start_pts) * video.tb, Fraction(0), Fraction(0)
    reference = variant.reference or variant.rendition  # (a plan made before there was one: its own)
    if reference is not None:
        with ctx.storage.reading(rendition_parts(parts, reference, info)[0].path) as local:
            dts = first_time(local, video=True)
        lift = max(lift, (origin if reference.rate is None else Fraction(0)) - dts)
    track = next((a for a in audio if a.key == variant.audio), None) if variant.audio else None
    if track is not None:
        with ctx.storage.reading(track.file.path) as local:
            first = first_time(local, video=False)
        priming = max(Fraction(0), Fraction(track.start) - first)
        lift = max(lift, origin - first)
    return lift, priming


@operator("export.hls_variant", weight=3)
def hls_variant(variant: HlsVariant, parts: list[ChunkEncodes], audio: list[AudioTrack], info: MediaInfo, *,
                params: HlsParams, ctx: OpContext) -> VariantOutput:
    """Segment one rung (or the audio) into fMP4 with its playlist, store it, and verify it."""
    video = info.video
    assert video is not None
    r = variant.rendition
    name = variant_name(r)
    progress = Progress(ctx)
    origin = Fraction(video.start_pts) * video.tb
    lift, priming = package_start(variant, parts, audio, info, ctx)
    channels = 2
    frame = 1 / float(r.rate or video.rate) if r is not None else 0.0  # the audio's: one AAC frame, below
    with tempfile.TemporaryDirectory(prefix="ave-hls-") as tmp:
        folder = Path(tmp) / name
        if r is not None:
            ordered = rendition_parts(parts, r, info)
            shift = (origin if r.rate is None else Fraction(0)) - lift
            with ctx.storage.reading(ordered[0].path) as first, open_input(first) as c0:
                template = c0.streams.video[0]
                codec = avc1_codec(template.codec_context.extradata)
                _mux(folder, variant.segment_seconds, template, lambda s: video_packets(ctx, ordered, shift, s))
            expected = float(lift)
        else:
            track = next((a for a in audio if a.key == variant.audio), None)
            if track is None:
                raise MediaError(f"The HLS package {variant.package} has no audio track to segment: its audio "
                                 "encoding did not finish. Export again.")
            channels = int(track.file.meta.get("channels", 2))  # type: ignore[call-overload]
            codec = "mp4a.40.2"
            with ctx.storage.reading(track.file.path) as local, open_input(local) as ain:
                stream = ain.streams.audio[0]
                # One AAC frame: the rendition ends on a whole one, up to this much past the sound.
                frame = (stream.codec_context.frame_size or 1024) / stream.sample_rate
                _mux(folder, variant.segment_seconds, stream,
                     lambda s: retime_packets(ain, stream, origin - lift, s, 1))
            expected = float(Fraction(track.start) - origin + lift)
        progress(0.4)
        segments, starts, keys, frames, first = _check_variant(folder, name, params.verify_decode, r is not None)
        if r is not None:
            priming = Fraction(0)  # the audio's: a rung's first frame is its first sample
        start = first + float(priming)
        if abs(start - expected) > 1e-3:
            raise MediaError(f"{_what(name)} starts at {start:.3f}s instead of {expected:.3f}s, out of step with the "
                             "rest of the package. Export again; if it happens again, re-save the source from your "
                             "editor (its timestamps may be damaged) and export that.")
        total = sum(d for d, _ in segments)
        _check_length(name, r, info, frames, total - float(priming), frame)
        files = _store(Path(tmp), variant.package, ctx, name)
    ctx.log(f"{variant.package} {name}: {len(segments)} segments, {total:.2f}s from {start:.3f}s"
            + (f", {frames} frames, {len(keys)} keyframes" if r is not None else "") + ", every segment decodes")
    progress.done()
    return VariantOutput(package=variant.package, index=variant.index, name=name, rendition=r, codec=codec,
                         channels=channels, files=files, segments=segments, starts=starts, keyframes=keys,
                         frames=frames, start=start)


def _check_length(name: str, r: Rendition | None, info: MediaInfo, frames: int, length: float, frame: float) -> None:
    """A rung: the exact frame count, the source's duration within a frame. The audio, from its first
    audible sample: the source's sound, up to one AAC frame longer (the encoder pads the last one)."""
    video = info.video
    assert video is not None
    if r is not None:
        if frames != r.frames:
            raise MediaError(f"{_what(name)} holds {frames} frames where the source has {r.frames}. Export again; if "
                             "it happens again, re-save the source at a constant frame rate and export that.")
        if abs(length - video.duration) > frame + 1e-3:
            raise MediaError(f"{_what(name)} came out {longer_or_shorter(length - video.duration)} than the source "
                             f"({length:.3f}s against {video.duration:.3f}s; at most one frame, {frame * 1000:.1f} ms, "
                             "is allowed). Re-save the source at a constant frame rate and export again.")
        return
    sound = info.audio.duration if info.audio is not None else video.duration
    if not -1e-3 <= length - sound <= frame + 1e-3:
        raise MediaError(f"{_what(name)} came out {longer_or_shorter(length - sound)} than the source's sound "
                         f"({length:.3f}s against {sound:.3f}s; AAC ends on a whole frame, so up to "
                         f"{frame * 1000:.1f} ms longer is expected). The source's sound may be cut short or "
                         "damaged: re-save it from your editor and export again.")


def master_playlist(variants: list[VariantOutput], fps: float) -> str:
    video = sorted((v for v in variants if v.rendition is not None), key=lambda v: v.index)
    audio = next((v for v in variants if v.rendition is None), None)
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Audio",DEFAULT=YES,AUTOSELECT=YES,'
                     f'CHANNELS="{audio.channels}",URI="audio/index.m3u8"')
    for v in video:
        r = v.rendition
        assert r is not None
        peak = v.peak_bitrate + (audio.peak_bitrate if audio else 0)
        avg = v.average_bitrate + (audio.average_bitrate if audio else 0)
        codecs = v.codec + (f",{audio.codec}" if audio else "")
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={avg},RESOLUTION={r.width}x{r.height},"
                     f'FRAME-RATE={fps:.3f},CODECS="{codecs}"' + (',AUDIO="aud"' if audio else ""))
        lines.append(f"{v.name}/index.m3u8")
    return "\n".join(lines) + "\n"


@operator("export.hls", weight=1)
def hls_package(package: HlsPackage, variants: list[VariantOutput], info: MediaInfo, *,
                ctx: OpContext) -> HlsOutput:
    """The master playlist of a package's verified variants, after checking that their keyframes line up."""
    video = info.video
    assert video is not None
    mine = sorted((v for v in variants if v.package == package.preset.name), key=lambda v: v.index)
    rungs = [v for v in mine if v.rendition is not None]
    audio = next((v for v in mine if v.rendition is None), None)
    if [v.rendition.key for v in rungs if v.rendition] != [r.key for r in package.renditions] or (
            package.audio is not None and audio is None):
        raise MediaError(f"The HLS package {package.preset.name} is missing some of its renditions: export again")
    for v in rungs[1:]:
        if v.starts != rungs[0].starts or v.keyframes != rungs[0].keyframes or abs(v.start - rungs[0].start) > 1e-3:
            raise MediaError(f"The keyframes of the HLS {v.name} video do not line up with those of "
                             f"{rungs[0].name}, so players would stall when switching between them. Export again.")
    rate = package.renditions[0].rate or video.rate
    _check_start(audio, rungs[0], info, 1 / float(rate))
    text = master_playlist(mine, float(rate))
    parsed = m3u8.loads(text)
    if not parsed.is_variant or len(parsed.playlists) != len(rungs) or any(
            not (p.stream_info.bandwidth and p.stream_info.resolution and p.stream_info.codecs) for p in parsed.playlists):
        raise MediaError("The HLS master playlist came out without every rendition's BANDWIDTH, RESOLUTION and "
                         "CODECS: export again")
    path = ctx.output_path(f"export/{package.preset.name}/master.m3u8")
    with ctx.storage.writing(path) as tmp:
        tmp.write_text(text)
    name = package.preset.name
    meta = {"uri": "master.m3u8", "preset": name, "variants": [f"{v.rendition.width}x{v.rendition.height}"
                                                                for v in rungs if v.rendition],
            "segments": len(rungs[0].segments), "segment_seconds": package.preset.segment_seconds,
            "keyframes_aligned": True, "frame_count": rungs[0].frames, "duration": rungs[0].duration,
            "bandwidth": [p.stream_info.bandwidth for p in parsed.playlists], "audio": audio is not None,
            "start": round(rungs[0].start, 6),
            # Every file the playlists name, by URI: GET /assets/{master}/{uri} serves them (no id map needed).
            "files": sorted(str(f.meta["uri"]) for v in mine for f in v.files if "uri" in f.meta)}
    ctx.log(f"{name}: {len(rungs)} variants ({', '.join(v.name for v in rungs)}){' + audio' if audio else ''}, "
            f"{len(rungs[0].segments)} segments of ~{package.preset.segment_seconds:g}s, keyframes aligned — verified")
    master = StoredFile(path=path, kind="hls", content_type="application/vnd.apple.mpegurl",
                        size=ctx.storage.size(path), meta=meta)
    ctx.progress(1.0)
    return HlsOutput(master=master, files=[f for v in mine for f in v.files])


def _check_start(audio: VariantOutput | None, first: VariantOutput, info: MediaInfo, frame: float) -> None:
    """The first audible sample plays within a frame of the first picture, as far from it as in the source."""
    video = info.video
    if audio is None or info.audio is None or video is None:
        return
    # Against the source's own offset, so a source whose sound starts late is not "fixed".
    wanted = info.audio.start_seconds - float(video.start_pts * video.tb)
    gap = audio.start - first.start - wanted
    if abs(gap) >= frame:
        raise MediaError(f"The HLS audio rendition starts {abs(gap) * 1000:.0f} ms {'after' if gap > 0 else 'before'} "
                         f"the video (at most one frame, {frame * 1000:.1f} ms, is allowed), so players would show a "
                         "gap or play out of sync. Export again; if it happens again, re-save the source from your "
                         "editor so its sound and picture start together, and export that.")
