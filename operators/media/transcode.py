"""``media.transcode_chunk``: decode one chunk's frames and encode them, video only, per rendition.

Rotation: the pixels are NOT turned. Each chunk keeps the source's display matrix
(``set_display_rotation``), as ``ffmpeg -noautorotate`` would, because turning 1080p frames
costs a transpose per frame and every player and browser honours the matrix. Rendition
heights are display heights (a portrait phone clip at 720p shows 720 pixels tall).

Colours: every proxy is BT.709, limited range, SDR, tagged so (:mod:`operators.media.colour`): the
source's matrix and range are read from its tags (or the players' SD/HD rule) and HDR is
tone-mapped, in the same swscale pass that scales.

Timestamps: frames keep their source pts and the encoder works in the source time base,
so 29.97 fps and VFR timing survive untouched and the join can check frames exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
from av.video.frame import PictureType
from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, codec_threads, coded_size, fit_height, mp4_options, open_input
from operators.media.colour import ColourScaler, tag_output
from operators.media.info import Chunk, ChunkOutput, MediaInfo, RenditionFile
from operators.media.thumbnails import TileGrabber, TileParams
from operators.registry import operator
from operators.types import SourceRef

__all__ = ["TranscodeParams", "packets_from_keyframe", "rendition_sizes", "transcode_chunk"]


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


class _Encoder:
    """One rendition's H.264 encoder and MP4 muxer for a chunk."""

    def __init__(self, path: Path, size: tuple[int, int], info: MediaInfo, params: TranscodeParams) -> None:
        video = info.video
        assert video is not None
        self.width, self.height = coded_size(size, video.rotation)
        # Scale and convert to BT.709 limited range in one swscale pass (HDR is tone-mapped).
        self.scale = ColourScaler(self.width, self.height, "yuv420p", params.interpolation, params.scale_threads)
        self.container = av.open(str(path), "w", format="mp4", options=mp4_options(video.tb))
        self.stream = self.container.add_stream(params.codec, rate=video.rate)
        cc = self.stream.codec_context
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, "yuv420p"
        cc.time_base = video.tb
        tag_output(cc)  # what the scale writes, whatever the source was
        self.stream.time_base = video.tb
        gop = max(1, round(params.gop_seconds * video.fps))
        self.stream.options = {
            "preset": params.preset,
            "crf": str(params.crf),
            "g": str(gop),
            "threads": str(codec_threads(params.encode_threads)),
        }
        if video.rotation:
            self.stream.set_display_rotation(video.rotation)
        self.tb = video.tb
        self._closed = False

    def encode(self, frame: Any) -> None:
        out = self.scale(frame)
        out.pts, out.time_base = frame.pts, self.tb
        # libx264 obeys a frame's picture type; the source's I/P/B choices must not leak in.
        out.pict_type = PictureType.NONE
        self.container.mux(self.stream.encode(out))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        self._closed = True

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.container.close()
            except av.error.FFmpegError:
                pass  # the partial file is discarded with its temp path anyway


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
            done = False
            for packet in _packets_from_keyframe(container, stream, chunk):
                for frame in packet.decode():
                    pts = frame.pts
                    if pts is None:
                        raise MediaError(f"A video frame near {chunk.start:.2f}s has no timestamp")
                    if pts < chunk.start_pts:
                        continue
                    if pts >= chunk.end_pts:
                        done = True
                        break
                    for enc in encoders:
                        enc.encode(frame)
                    if grab is not None:
                        grab(frame)
                    count += 1
                    first_pts = pts if first_pts is None else first_pts
                    last_pts = pts
                    progress(count / max(1, chunk.frame_count))
                    if count == chunk.frame_count:
                        # All of the chunk's frames are out (they come in pts order): no need to
                        # decode into the next GOP until a frame past the end shows up.
                        done = True
                        break
                if done:
                    break
            for enc in encoders:
                enc.close()
            thumbnails = grab.finish() if grab is not None and count == chunk.frame_count else None
        finally:
            for enc in encoders:
                enc.abort()
        # Checked inside the block so that a short chunk leaves no file behind.
        if count != chunk.frame_count or first_pts is None or last_pts is None:
            raise MediaError(
                f"Chunk {chunk.index + 1}/{chunk.count} ({chunk.start:.2f}s–{chunk.end:.2f}s) decoded to {count} "
                f"frames but the source holds {chunk.frame_count} there: the source is damaged in that range"
            )
    elapsed = time.monotonic() - started
    # Process CPU time: the codec threads' too (a Dask worker runs one task at a time here).
    cpu = time.process_time() - cpu_started
    ctx.log(
        f"Transcoded chunk {chunk.index + 1}/{chunk.count} ({count} frames, "
        f"{', '.join(f'{h}p' for h in sizes)}) at {count / max(elapsed, 1e-6):.0f} fps, {cpu:.2f} CPU-s "
        f"({decode_threads}+{codec_threads(params.encode_threads)} codec threads)"
    )
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
        duration=float((chunk.end_pts - first_pts) * tb),
        time_base=chunk.time_base,
        thumbnails=thumbnails,
    )
