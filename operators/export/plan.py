"""``export.plan``: which encodings, chunks, audio tracks and packages an export needs.

Presets are turned into *renditions* (one video encoding: codec, size, rate, rate control).
Identical renditions are encoded once: ``mp4-1080p`` and the 1080p rung of ``hls`` are the same
H.264 stream, so the HLS package and the MP4 share it. Renditions that share a preset are encoded
together (one decode feeds every rung of a ladder, so the rungs' keyframes are the same frames),
and the source is cut into keyframe-aligned chunks with ingest's splitter, so each
(chunk, group of renditions) is one Dask task. Audio encodings are deduplicated the same way.

Frame rates: a preset keeps the source's rate up to its ``max_fps``; above it the rate is divided
by a whole number (60 -> 30, 59.94 -> 29.97), so frames are dropped evenly. Output frame ``k``
shows the last source frame at or before ``k / fps``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.presets import GIF_MAX_SECONDS, ExportPreset, ExportPresets, ladder_bitrate
from operators.media._av import Progress, even, open_input
from operators.media.chunks import SplitParams, plan_chunks
from operators.media.info import Chunk, MediaInfo
from operators.media.probe import read_video_packets
from operators.registry import operator
from operators.types import Frozen, SourceRef, StoredFile

__all__ = ["AudioEncoding", "Delivery", "ExportPlan", "GifJob", "HlsPackage", "HlsVariant", "PlanParams", "Rendition",
           "VideoTask", "export_plan", "output_frames", "pick_source"]


class Rendition(Frozen):
    """One video encoding of the source, shared by every preset that asks for exactly it."""

    key: str
    codec: Literal["h264", "hevc", "vp9", "av1"]
    width: int
    height: int
    #: libavfilter chain from the upright source frame to this picture (pad or cover); None: a plain scale.
    vf: str | None = None
    #: Output rate as "num/den"; None: the source's frames as they are, with their timestamps.
    fps: str | None = None
    frames: int
    crf: int
    max_bitrate: int | None = None
    encoder_preset: str
    gop_frames: int
    #: 10-bit, keeping an HDR source's HDR (see ExportPreset.hdr); part of the key, so never shared with SDR.
    hdr: bool = False
    #: The chunk files' container: the one the deliveries copy the packets into.
    container: Literal["mp4", "webm"] = "mp4"

    @property
    def rate(self) -> Fraction | None:
        return Fraction(self.fps) if self.fps else None


class VideoTask(Frozen):
    """One Dask task: decode one chunk once, encode it to each rendition."""

    index: int
    chunk: Chunk
    renditions: list[Rendition]


class AudioEncoding(Frozen):
    key: str
    codec: Literal["aac", "opus", "mp3", "pcm_s16le"]
    bitrate: int | None
    sample_rate: int
    channels: int
    #: A delivered file itself (audio-mp3, audio-wav), not a track for a video file.
    final: bool = False
    preset: str | None = None


class Delivery(Frozen):
    """A video (or audio) preset's file: a rendition's chunks joined with an audio track."""

    preset: ExportPreset
    rendition: Rendition | None = None
    audio: str | None = None


class HlsPackage(Frozen):
    preset: ExportPreset
    renditions: list[Rendition]
    audio: str | None = None


class HlsVariant(Frozen):
    """One task of an HLS package: a rung (``rendition``), or the audio rendition (no ``rendition``)."""

    package: str
    index: int
    segment_seconds: float
    rendition: Rendition | None = None
    #: The package's audio track (every variant reads where its AAC priming starts).
    audio: str | None = None
    #: The package's first rung: with the audio's priming, its first packets set where every variant starts.
    reference: Rendition | None = None


class GifJob(Frozen):
    preset: ExportPreset
    width: int
    height: int
    fps: str
    start: float
    duration: float
    frames: int


class ExportPlan(Frozen):
    """Everything the export's tasks need, in lists the graph maps over."""

    origin: float
    duration: float
    video_tasks: list[VideoTask] = []
    audio: list[AudioEncoding] = []
    deliveries: list[Delivery] = []
    hls: list[HlsPackage] = []
    hls_variants: list[HlsVariant] = []
    gifs: list[GifJob] = []
    #: Presets with nothing to make, and why (their outputs are null).
    skipped: dict[str, str] = {}
    #: What the log should say about presets that are made differently than asked (a GIF cut at 60 s).
    notes: list[str] = []
    names: list[str] = []


class PlanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Source seconds per encode task (ingest's splitter; chunks start on the source's keyframes).
    chunk_seconds: float = Field(10.0, ge=1, le=600)


def output_rate(source: Fraction, preset: ExportPreset) -> Fraction:
    """The preset's exact rate, else the source's divided by the smallest whole number that fits the cap."""
    if preset.fps is not None:
        return preset.fps
    cap = Fraction(repr(preset.max_fps))
    return source if source <= cap else source / math.ceil(source / cap)


def output_frames(start: Fraction, end: Fraction, fps: Fraction, total: int) -> tuple[int, int]:
    """Output frames ``[a, b)`` whose times ``k / fps`` fall in source seconds ``[start, end)``."""
    return min(total, math.ceil(start * fps)), min(total, math.ceil(end * fps))


def _box(preset: ExportPreset, display: tuple[int, int]) -> tuple[int, int] | None:
    if preset.width is None and preset.height is None:
        return None
    w, h = preset.width, preset.height
    if preset.fit == "contain" and w and h and (display[1] > display[0]) != (h > w):
        w, h = h, w  # a "1080p" box means the short side: turned to the source's orientation
    return w or 0, h or 0


def fit_size(preset: ExportPreset, display: tuple[int, int]) -> tuple[int, int, str | None]:
    """The output size, and the filter chain for pad / cover (None: a plain scale)."""
    dw, dh = display
    box = _box(preset, display)
    fmt = "yuv420p10le" if preset.hdr else "yuv420p"
    if box is None:
        return even(dw), even(dh), None
    bw, bh = box
    if preset.fit == "cover":
        # Crop the source to the box's shape (centred), then scale to the box.
        if dw * bh > dh * bw:
            cw, ch = even(dh * bw / bh), even(dh)
        else:
            cw, ch = even(dw), even(dw * bh / bw)
        x, y = (dw - cw) // 2 & ~1, (dh - ch) // 2 & ~1
        return bw, bh, f"crop={cw}:{ch}:{x}:{y},scale={bw}:{bh}:flags=bicubic,format={fmt}"
    scales = [s for s in (bw / dw if bw else None, bh / dh if bh else None) if s is not None]
    scale = min(scales)
    if not preset.upscale:
        scale = min(scale, 1.0)
    w, h = even(dw * scale), even(dh * scale)
    if preset.fit == "pad":
        w, h = min(w, bw), min(h, bh)
        x, y = (bw - w) // 2 & ~1, (bh - h) // 2 & ~1
        return bw, bh, f"scale={w}:{h}:flags=bicubic,pad={bw}:{bh}:{x}:{y}:black,format={fmt}"
    return w, h, None


def _rendition(preset: ExportPreset, info: MediaInfo, size: tuple[int, int, str | None],
               max_bitrate: int | None) -> Rendition:
    video = info.video
    assert video is not None
    rate = output_rate(video.rate, preset)
    passthrough = rate == video.rate and not video.is_vfr
    frames = video.frame_count if passthrough else max(1, round(Fraction(repr(video.duration)) * rate))
    codec = preset.video_codec or "h264"
    speed = preset.encoder_preset or {"h264": "veryfast", "hevc": "faster", "vp9": "5", "av1": "8"}[codec]
    gop = max(1, round(preset.gop_seconds * rate))
    w, h, vf = size
    fps = None if passthrough else f"{rate.numerator}/{rate.denominator}"
    key = (f"{codec}-{w}x{h}" + (f"-{abs(hash(vf)) % 10**6:06d}" if vf else "")
           + f"-{(fps or 'src').replace('/', '_')}-q{preset.crf}-{(max_bitrate or 0) // 1000}k-{speed}-g{gop}"
           + ("-hdr" if preset.hdr else ""))
    return Rendition(key=key, codec=codec, width=w, height=h, vf=vf, fps=fps, frames=frames, hdr=preset.hdr,
                     crf=preset.crf if preset.crf is not None else 23, max_bitrate=max_bitrate,
                     encoder_preset=speed, gop_frames=gop, container="webm" if codec in ("vp9", "av1") else "mp4")


def _ladder(preset: ExportPreset, info: MediaInfo, display: tuple[int, int]) -> list[Rendition]:
    short, long_ = min(display), max(display)
    rungs = [r for r in preset.ladder or [] if r <= short] or [even(short)]
    out = []
    for rung in rungs:
        other = even(long_ * rung / short)
        size = (other, rung) if display[0] >= display[1] else (rung, other)
        out.append(_rendition(preset, info, (*size, None), ladder_bitrate(rung)))
    return out


def _audio(preset: ExportPreset, info: MediaInfo) -> AudioEncoding | None:
    audio = info.audio
    if audio is None or preset.audio_codec is None:
        return None
    channels = min(preset.channels, audio.channels)
    bitrate = preset.audio_bitrate if preset.audio_codec != "pcm_s16le" else None
    final = preset.kind == "audio"
    key = f"{preset.audio_codec}-{(bitrate or 0) // 1000}k-{preset.sample_rate}-{channels}ch"
    return AudioEncoding(key=f"{preset.name}-{key}" if final else key, codec=preset.audio_codec, bitrate=bitrate,
                         sample_rate=preset.sample_rate, channels=channels, final=final,
                         preset=preset.name if final else None)


def _gif(preset: ExportPreset, info: MediaInfo, display: tuple[int, int], skipped: dict[str, str],
         notes: list[str]) -> GifJob | None:
    video = info.video
    assert video is not None
    if preset.start >= video.duration:
        skipped[preset.name] = f"it starts at {preset.start:g}s, past the end of the source ({video.duration:.2f}s)"
        return None
    length = min(video.duration - preset.start, preset.duration or GIF_MAX_SECONDS, GIF_MAX_SECONDS)
    if preset.duration is None and video.duration - preset.start > GIF_MAX_SECONDS:
        notes.append(f"{preset.name}: the source lasts {video.duration:.1f}s: the GIF covers "
                     f"{preset.start:g}–{preset.start + length:g}s (a GIF lasts at most {GIF_MAX_SECONDS:g}s)")
    rate = output_rate(video.rate, preset)
    w, h, _ = fit_size(preset.model_copy(update={"fit": "contain"}), display)
    return GifJob(preset=preset, width=w, height=h, fps=f"{rate.numerator}/{rate.denominator}", start=preset.start,
                  duration=length, frames=max(1, round(Fraction(repr(length)) * rate)))


def _groups(presets: list[list[Rendition]]) -> list[list[Rendition]]:
    """Renditions of the same preset, merged where presets share one: each group is decoded once."""
    groups: list[dict[str, Rendition]] = []
    for renditions in presets:
        keys = {r.key for r in renditions}
        joined = {r.key: r for r in renditions}
        for group in [g for g in groups if keys & set(g)]:
            joined.update(group)
            groups.remove(group)
        groups.append(joined)
    return [list(g.values()) for g in groups]


def plan_export(info: MediaInfo, presets: list[ExportPreset], chunks: list[Chunk]) -> ExportPlan:
    """The plan for ``presets`` of a source described by ``info`` and cut into ``chunks``."""
    video = info.video
    display = (video.display_width, video.display_height) if video else (0, 0)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    audio: dict[str, AudioEncoding] = {}
    deliveries: list[Delivery] = []
    packages: list[HlsPackage] = []
    gifs: list[GifJob] = []
    encoded: list[list[Rendition]] = []
    for preset in presets:
        if preset.kind != "audio" and video is None:
            skipped[preset.name] = "the source has no video stream"
            continue
        track = _audio(preset, info)
        if track is not None:
            audio.setdefault(track.key, track)
        if preset.kind == "audio":
            if track is None:
                skipped[preset.name] = "the source has no audio stream"
            else:
                deliveries.append(Delivery(preset=preset, audio=track.key))
        elif preset.kind == "gif":
            job = _gif(preset, info, display, skipped, notes)
            if job is not None:
                gifs.append(job)
        elif preset.kind == "hls":
            rungs = _ladder(preset, info, display)
            encoded.append(rungs)
            packages.append(HlsPackage(preset=preset, renditions=rungs, audio=track.key if track else None))
        else:
            rendition = _rendition(preset, info, fit_size(preset, display), preset.max_bitrate)
            encoded.append([rendition])
            deliveries.append(Delivery(preset=preset, rendition=rendition, audio=track.key if track else None))
    # Each variant is its own task, so each is told what sets the package's start (hls.package_start).
    variants = [HlsVariant(package=p.preset.name, index=i, segment_seconds=p.preset.segment_seconds, rendition=r,
                           audio=p.audio, reference=p.renditions[0])
                for p in packages for i, r in enumerate(p.renditions)]
    variants += [HlsVariant(package=p.preset.name, index=len(p.renditions), segment_seconds=p.preset.segment_seconds,
                            audio=p.audio, reference=p.renditions[0]) for p in packages if p.audio]
    tasks = [VideoTask(index=0, chunk=chunk, renditions=group) for chunk in chunks for group in _groups(encoded)]
    tasks = [t.model_copy(update={"index": i}) for i, t in enumerate(tasks)]
    origin = float(video.start_pts * video.tb) if video else (info.audio.start_seconds if info.audio else 0.0)
    duration = video.duration if video else (info.audio.duration if info.audio else info.duration)
    return ExportPlan(origin=origin, duration=duration, video_tasks=tasks, audio=list(audio.values()),
                      deliveries=deliveries, hls=packages, hls_variants=variants, gifs=gifs, skipped=skipped, notes=notes,
                      names=[p.name for p in presets])


@operator("export.plan", weight=1)
def export_plan(source: SourceRef, info: MediaInfo, presets: ExportPresets, *, params: PlanParams,
                ctx: OpContext) -> ExportPlan:
    """Renditions, chunks (ingest's keyframe split), audio tracks and packages for the presets."""
    chunks: list[Chunk] = []
    video = info.video
    wanted = presets.presets
    if video is not None and any(p.kind in ("video", "hls") for p in wanted):
        progress = Progress(ctx)
        with ctx.storage.reading(source.path) as local, open_input(local) as container:
            packets = read_video_packets(container, container.streams[video.index], progress)
        chunks = plan_chunks(packets, video.tb, SplitParams(target_seconds=params.chunk_seconds))
        if sum(c.frame_count for c in chunks) != video.frame_count:
            raise MediaError("The source's frames could not be split into chunks exactly")
    plan = plan_export(info, wanted, chunks)
    for name, reason in plan.skipped.items():
        ctx.log(f"{name}: nothing to export, {reason} (its output is null)")
    for note in plan.notes:
        ctx.log(note)
    renditions = {r.key: r for t in plan.video_tasks for r in t.renditions}
    ctx.log(f"Export plan: {len(wanted)} preset{'s' if len(wanted) != 1 else ''}, {len(renditions)} video "
            f"encoding{'s' if len(renditions) != 1 else ''} ({', '.join(_describe(r) for r in renditions.values()) or 'none'}) "
            f"in {len(plan.video_tasks)} tasks over {len(chunks)} chunk{'s' if len(chunks) != 1 else ''}, "
            f"{len(plan.audio)} audio track{'s' if len(plan.audio) != 1 else ''}")
    return plan


def _describe(r: Rendition) -> str:
    cap = f" ≤{r.max_bitrate / 1e6:g} Mb/s" if r.max_bitrate else ""
    return (f"{r.codec}{' 10-bit HDR' if r.hdr else ''} {r.width}x{r.height}"
            f"{f' @ {float(Fraction(r.fps)):.3g} fps' if r.fps else ''}{cap}")


@operator("export.source", weight=0.1)
def pick_source(source: SourceRef | None = None, render: StoredFile | None = None) -> SourceRef:
    """What is exported: the job's source, else the render the graph just made of its timeline."""
    if source is not None:
        return source
    if render is None:
        raise MediaError("Nothing to export: the job has no source and no render of a timeline")
    return SourceRef(path=render.path)
