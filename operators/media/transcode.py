"""``media.transcode_chunk``: decode one chunk's frames and encode them, video only, per rendition.

Rotation: the pixels are NOT turned. Each chunk keeps the source's display matrix
(``set_display_rotation``), as ``ffmpeg -noautorotate`` would, because turning 1080p frames
costs a transpose per frame and every player and browser honours the matrix. Rendition
heights are display heights (a portrait phone clip at 720p shows 720 pixels tall).

Colours: every proxy is BT.709, limited range, SDR, tagged so (:mod:`operators.media.colour`): the
source's matrix and range are read from its tags (or the players' SD/HD rule) and HDR is
tone-mapped, in the same swscale pass that scales.

Timestamps: frames keep their source pts and the encoder works in the source time base,
so 29.97 fps and VFR timing survive untouched and the join can check frames exactly. With
``constant_rate`` a variable-rate source (a screen recording switching 30 → 60 → 10 fps) becomes
constant-rate instead, as exports always do: its average rate (:mod:`operators.media.probe`), frame ``k``
at ``k / rate`` from the first frame showing the source frame nearest that time (:func:`constant_rate`);
chunks own the output frames whose times fall in them.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
from av.video.frame import PictureType
from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import (
    Damage,
    Deinterlacer,
    EncodedOutput,
    Progress,
    codec_threads,
    coded_size,
    fit_height,
    mp4_options,
    open_input,
)
from operators.media.colour import ColourScaler, tag_output
from operators.media.info import Chunk, ChunkOutput, MediaInfo, RenditionFile, VideoStreamInfo
from operators.media.thumbnails import TileGrabber, TileParams
from operators.registry import operator
from operators.types import SourceRef

__all__ = ["ChunkFrames", "TranscodeParams", "cfr_frames", "constant_rate", "output_span", "packets_from_keyframe",
           "rendition_sizes", "tick_of", "transcode_chunk"]


class TranscodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Display heights; a source shorter than a rendition is not upscaled.
    renditions: list[int] = Field(default_factory=lambda: [720], min_length=1)
    codec: Literal["libx264"] = "libx264"
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    crf: int = Field(23, ge=0, le=51)
    #: Keyframe interval of the proxy: short enough for snappy scrubbing in the editor.
    gop_seconds: float = Field(2.0, gt=0)
    #: Encoder and decoder threads; None: the cores one task may use (``_av.codec_threads``:
    #: 1 on a 2-core machine with 2 workers, 2 with 1 worker). Measured at 1080p→720p veryfast,
    #: a minute in 10 s chunks, 2 workers on 2 cores, each transcoding a chunk: 2 and 2 threads
    #: 23.7 CPU-s in 12.5 s, 1 and 1 22.6 CPU-s in 11.3 s (the threads of two chunks contend
    #: for the same two cores). A chunk running alone with 2 and 2 uses ~1.5 cores instead of 1.
    encode_threads: int | None = Field(None, ge=1, le=16)
    decode_threads: int | None = Field(None, ge=1, le=16)
    #: swscale threads per rendition. One: a reused scaler on one thread costs half of what a
    #: fresh per-frame one with a thread per CPU did, and chunks already fill the cores.
    scale_threads: int = Field(1, ge=0, le=16)
    #: swscale filter; "BICUBIC" matches ffmpeg's scale filter.
    interpolation: Literal["FAST_BILINEAR", "BILINEAR", "BICUBIC", "AREA", "LANCZOS"] = "BICUBIC"

    #: Make a variable-rate source's proxy constant-rate (its average rate, the nearest source frame at each
    #: tick), as exports are. Off: the proxy keeps the source's own timestamps, frame for frame.
    constant_rate: bool = False

    #: Also take sprite tiles from the decoded frames (``ChunkOutput.thumbnails``, made into the
    #: sheet by ``media.sprite_sheet``), so that the sprite costs no decode of its own: a sprite
    #: that decoded 30 keyframes of a 1080p minute cost 0.75-0.85 CPU-s; 5 tiles per chunk cost
    #: ~0.01. None: no tiles.
    sprite: TileParams | None = None

    @field_validator("renditions")
    @classmethod
    def _heights(cls, value: list[int]) -> list[int]:
        if any(h < 16 or h > 4320 for h in value):
            raise ValueError("each rendition height must be between 16 and 4320")
        return sorted(set(value), reverse=True)


def rendition_sizes(info: MediaInfo, heights: list[int]) -> dict[int, tuple[int, int]]:
    """Rendition name (its asked-for height) → even display size, never above the source."""
    video = info.video
    assert video is not None
    return {h: fit_height(video.display_width, video.display_height, h) for h in heights}


class _Encoder(EncodedOutput):
    """One rendition's H.264 encoder and MP4 muxer for a chunk."""

    def __init__(self, path: Path, size: tuple[int, int], info: MediaInfo, params: TranscodeParams) -> None:
        video = info.video
        assert video is not None
        self.width, self.height = coded_size(size, video.rotation)
        # Scale and convert to BT.709 limited range in one swscale pass (HDR is tone-mapped).
        self.scale = ColourScaler(self.width, self.height, "yuv420p", params.interpolation, params.scale_threads)
        # VFR sources are made constant-rate: frame k at k / rate.
        self.tb = 1 / video.rate if video.is_vfr and params.constant_rate else video.tb
        self.container = av.open(str(path), "w", format="mp4", options=mp4_options(self.tb))
        self.stream = self.container.add_stream(params.codec, rate=video.rate)
        cc = self.stream.codec_context
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, "yuv420p"
        cc.time_base = self.tb
        tag_output(cc)  # what the scale writes, whatever the source was
        self.stream.time_base = self.tb
        gop = max(1, round(params.gop_seconds * video.fps))
        self.stream.options = {
            "preset": params.preset,
            "crf": str(params.crf),
            "g": str(gop),
            "threads": str(codec_threads(params.encode_threads)),
        }
        if video.rotation:
            self.stream.set_display_rotation(video.rotation)
        self._closed = False

    def encode(self, frame: Any, pts: int) -> None:
        out = self.scale(frame)
        out.pts, out.time_base = pts, self.tb
        # libx264 obeys a frame's picture type; the source's I/P/B choices must not leak in.
        out.pict_type = PictureType.NONE
        self.container.mux(self.stream.encode(out))


def _packets_from_keyframe(container: Any, stream: Any, chunk: Chunk) -> Iterator[Any]:
    """The video packets from the chunk's keyframe on, in decode order.

    Demuxers disagree on what a seek timestamp means: FFmpeg's MP4 demuxer seeks by pts, so
    ``seek_ts`` (the keyframe's dts, below its pts when there are B-frames) lands one whole
    GOP early, and decoding that GOP for nothing cost ~0.3 CPU-s per 1080p chunk. So seek to
    the keyframe's pts first, and fall back to ``seek_ts`` (always at or before it) when
    that overshoots. Starting early is only slower (frames before the chunk are skipped);
    starting late would lose frames, which the frame count check would catch.
    """
    for target in dict.fromkeys((chunk.seek_pts, chunk.seek_ts)):
        container.seek(target, stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        for packet in packets:
            if packet.size and packet.is_keyframe:
                break  # a seek may land a little early, on other packets; decoding starts at a keyframe
        else:
            continue
        landed = packet.pts if packet.pts is not None else packet.dts
        if landed is not None and landed > chunk.seek_pts and target != chunk.seek_ts:
            continue  # past the keyframe: this demuxer wants the other timestamp
        yield packet
        yield from packets
        return


#: Public for the other media operators that decode a chunk (export's encoder).
packets_from_keyframe = _packets_from_keyframe


def cfr_frames(video: VideoStreamInfo) -> int:
    """How many frames a variable-rate source has once constant-rate: its length at its average rate."""
    return max(1, round(Fraction(repr(video.duration)) * video.rate))


def tick_of(seconds: Fraction, rate: Fraction) -> int:
    """The constant-rate frame nearest a source frame's time (halves go up)."""
    return math.floor(seconds * rate + Fraction(1, 2))


def constant_rate(frames: Iterable[Any], span: tuple[int, int], rate: Fraction, origin: int,
                  tb: Fraction) -> Iterator[tuple[Any, int]]:
    """Output frames ``k`` in ``span`` (at ``k / rate`` s from the source's first frame, ``origin``).

    FFmpeg's ``fps`` rule (``round=near``): each source frame goes on the output frame nearest its own
    time, a later one taking the place of an earlier one on the same tick (frames dropped above the
    rate), and an output frame that no source frame lands on shows the one before (frames repeated).
    Every source frame's place depends on its own time only, so chunks cut anywhere agree.
    """
    k, end = span
    held = None
    for frame in frames:
        tick = tick_of((frame.pts - origin) * tb, rate)
        while held is not None and k < min(tick, end):
            yield held, k
            k += 1
        held = frame
    while held is not None and k < end:
        yield held, k
        k += 1


def output_span(chunk: Chunk, video: VideoStreamInfo, rate: Fraction, total: int) -> tuple[int, int]:
    """The constant-rate frames ``[a, b)`` a chunk's source frames land on; the last chunk's run to ``total``."""
    a, b = (tick_of((pts - video.start_pts) * video.tb, rate) for pts in (chunk.start_pts, chunk.end_pts))
    return min(total, a), total if chunk.index == chunk.count - 1 else min(total, b)


def _grabbing(frames: Iterable[Any], grab: TileGrabber | None) -> Iterator[Any]:
    """The frames, each handed to the sprite's grabber first (the source's frames, at the source's times)."""
    for frame in frames:
        if grab is not None:
            grab(frame)
        yield frame


class ChunkFrames:
    """A chunk's frames in pts order, exactly one per source frame it owns, progressive.

    Damaged packets (the decoder refuses them) give no frame: the frame before stays on screen in
    its place (the first frame after, at a chunk's start), so frame counts and timing stay exact;
    ``filled`` counts them and ``damage.packets`` the packets refused. Interlaced sources go through
    :class:`Deinterlacer` first, fed from the keyframe on so the chunk's first frame has the one before it.
    """

    def __init__(self, container: Any, stream: Any, chunk: Chunk, interlaced: bool = False) -> None:
        self.container, self.stream, self.chunk = container, stream, chunk
        self.damage = Damage()
        self.deinterlace = Deinterlacer() if interlaced else None
        self.filled = 0
        #: The frames given so far.
        self.count = 0
        #: The pts of the chunk's packets handed to the decoder so far, sorted.
        self._expected: list[int] = []

    def _decoded(self) -> Iterator[Any]:
        chunk = self.chunk
        for packet in _packets_from_keyframe(self.container, self.stream, chunk):
            owned = packet.size and packet.pts is not None and chunk.start_pts <= packet.pts < chunk.end_pts
            if owned:
                bisect.insort(self._expected, packet.pts)
            refused = self.damage.packets
            decoded = self.damage.decode(packet)
            if self.damage.packets > refused and not owned:
                self.damage.packets = refused  # before the chunk: the chunk before counts it
            for frame in decoded:
                yield from self.deinterlace(frame) if self.deinterlace is not None else [frame]
        if self.deinterlace is not None:
            yield from self.deinterlace.flush()

    def __iter__(self) -> Iterator[Any]:
        chunk, expected = self.chunk, self._expected
        count, held = 0, None
        for frame in self._decoded():
            pts = frame.pts
            if pts is None:
                raise MediaError(f"A video frame near {chunk.start:.2f}s has no timestamp")
            if pts < chunk.start_pts:
                continue
            # Frames come out in pts order: a source frame before this one that has not come out never will.
            while count < len(expected) and expected[count] < min(pts, chunk.end_pts):
                yield self._fill(held if held is not None else frame, expected[count])
                count += 1
            if pts >= chunk.end_pts:
                return
            if count < len(expected) and expected[count] == pts:
                held, frame.pts = frame, pts  # a fill above may have lent it another pts
                self.count += 1
                yield frame
                count += 1
            if count == chunk.frame_count:
                # All of the chunk's frames are out: no need to decode into the next GOP.
                return
        for pts in expected[count:]:
            if held is not None:
                yield self._fill(held, pts)

    def _fill(self, frame: Any, pts: int) -> Any:
        self.filled += 1
        self.count += 1
        frame.pts = pts
        return frame


@operator("media.transcode_chunk", weight=10)
def transcode_chunk(
    source: SourceRef, chunk: Chunk, info: MediaInfo, *, params: TranscodeParams, ctx: OpContext
) -> ChunkOutput:
    """Encode one chunk's frames to H.264 at each rendition height (video only)."""
    video = info.video
    if video is None:
        raise MediaError("The source has no video stream to transcode")
    tb: Fraction = video.tb
    sizes = rendition_sizes(info, params.renditions)
    progress = Progress(ctx)
    started, cpu_started = time.monotonic(), time.process_time()
    count, first_pts, last_pts = 0, None, None
    paths = {h: ctx.output_path(f"chunks/{h}p/{chunk.index:05d}.mp4") for h in sizes}
    with ExitStack() as stack:
        local = stack.enter_context(ctx.storage.reading(source.path))
        container = stack.enter_context(open_input(local))
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        decode_threads = codec_threads(params.decode_threads)
        stream.codec_context.thread_count = decode_threads
        grab = TileGrabber(video, chunk, params.sprite) if params.sprite is not None else None
        encoders = [
            _Encoder(stack.enter_context(ctx.storage.writing(paths[h])), sizes[h], info, params) for h in sizes
        ]
        try:
            frames = ChunkFrames(container, stream, chunk, video.interlaced)
            source_frames = _grabbing(frames, grab)
            cfr = video.is_vfr and params.constant_rate
            if cfr:
                span = output_span(chunk, video, video.rate, cfr_frames(video))
                pairs = constant_rate(source_frames, span, video.rate, video.start_pts, tb)
            else:
                span = (0, chunk.frame_count)
                pairs = ((f, f.pts) for f in source_frames)
            expected = span[1] - span[0]
            for frame, pts in pairs:
                for enc in encoders:
                    enc.encode(frame, pts)
                count += 1
                first_pts = pts if first_pts is None else first_pts
                last_pts = pts
                progress(count / max(1, expected))
            for enc in encoders:
                enc.close()
            thumbnails = grab.finish() if grab is not None and frames.count == chunk.frame_count else None
        finally:
            for enc in encoders:
                enc.abort()
        # Checked inside the block so that a short chunk, or one damaged beyond repair, leaves no file behind.
        Damage.check(frames.filled, video.frame_count, "video frames")
        if frames.count != chunk.frame_count or count != expected or first_pts is None or last_pts is None:
            raise MediaError(
                f"Chunk {chunk.index + 1}/{chunk.count} ({chunk.start:.2f}s–{chunk.end:.2f}s) decoded to "
                f"{frames.count} frames but the source holds {chunk.frame_count} there: the source is damaged in that range"
            )
    elapsed = time.monotonic() - started
    # Process CPU time: the codec threads' too (a Dask worker runs one task at a time here).
    cpu = time.process_time() - cpu_started
    ctx.log(
        f"Transcoded chunk {chunk.index + 1}/{chunk.count} ({count} frames, "
        f"{', '.join(f'{h}p' for h in sizes)}) at {count / max(elapsed, 1e-6):.0f} fps, {cpu:.2f} CPU-s "
        f"({decode_threads}+{codec_threads(params.encode_threads)} codec threads)"
    )
    if frames.filled or frames.damage.packets:
        ctx.log(f"Chunk {chunk.index + 1}/{chunk.count}: {frames.damage.packets} damaged video packets could not be "
                f"decoded; {frames.filled} frames show the frame before them instead")
    progress.done()
    renditions = [
        RenditionFile(rendition=h, height=sizes[h][1], width=sizes[h][0], path=paths[h], size=ctx.storage.size(paths[h]))
        for h in sizes
    ]
    return ChunkOutput(
        chunk=chunk,
        renditions=renditions,
        frame_count=count,
        first_pts=first_pts,
        last_pts=last_pts,
        duration=float(count / video.rate) if cfr else float((chunk.end_pts - first_pts) * tb),
        # A constant-rate part says so by its time base, 1/rate (the join reads it).
        time_base=f"{video.rate.denominator}/{video.rate.numerator}" if cfr else chunk.time_base,
        thumbnails=thumbnails,
        damaged=frames.filled,
    )
