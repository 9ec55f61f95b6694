"""``export.encode_chunk``: decode one chunk of the source once and encode it to several renditions.

Decoding starts at the chunk's keyframe and keeps the frames the chunk owns (ingest's seek,
:func:`operators.media.transcode.packets_from_keyframe`). Phone video is turned upright once per
frame (deliveries carry no display matrix: GIFs, WebM and many players ignore it), then each
rendition scales (or pads / crops with libavfilter), converting to BT.709 limited range in that
same pass (HDR is tone-mapped: :mod:`operators.media.colour`), and encodes. A rendition that keeps
HDR (``hdr``: the ``hevc-1080p-hdr`` preset) is scaled and encoded in 10 bits instead; an HLG or
PQ source keeps its signal and is tagged (stream and x265's VUI) as the source is, an SDR source
is 10-bit BT.709. Keyframes are forced every
``gop_frames`` from the chunk's start and scene-cut keyframes are off, so every rendition of a
ladder has its keyframes on the same frames, which HLS needs to switch between them.

A rendition at the source's rate keeps the source's timestamps (as ingest's proxies do); one at
another rate numbers its frames ``k`` in ``1/fps`` and shows the last source frame at or before
``k / fps``. A variable-rate source is always converted (to its average rate unless the preset caps
it: :mod:`operators.media.probe`) by FFmpeg's ``fps`` rule, each source frame on the output frame
nearest its time (:func:`operators.media.transcode.constant_rate`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.loudness import drain
from operators.export.plan import Rendition, VideoTask, output_frames
from operators.media._av import Damage, EncodedOutput, Progress, codec_threads, mp4_options, open_input
from operators.media.colour import (OUTPUT, Colour, ColourScaler, build_graph, colour_of, managed_chain, output_for,
                                    tag_output)
from operators.media.info import Chunk, MediaInfo, VideoStreamInfo
from operators.media.transcode import ChunkFrames, output_span, tick_of
from operators.registry import operator
from operators.types import Frozen, SourceRef

__all__ = ["ChunkEncodes", "EncodedPart", "FrameFilter", "encode_chunk", "encoder_options", "upright_filter"]

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise (errors only)
ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}


class EncodedPart(Frozen):
    """One rendition of one chunk: a file of video packets, and which frames it holds."""

    rendition: str
    chunk: int
    chunks: int
    path: str
    frames: int
    #: First and last frame pts, in ``time_base`` (the source's, or ``1/fps``).
    first: int
    last: int
    time_base: str


class ChunkEncodes(Frozen):
    task: int
    chunk: Chunk
    parts: list[EncodedPart]
    cpu_seconds: float = 0.0


#: The x265 names of what a stream is tagged with (its VUI): matrices differ from FFmpeg's.
_X265_MATRICES = {"bt2020": "bt2020nc", "bt709": "bt709"}


def encoder_options(r: Rendition, threads: int, colour: Colour = OUTPUT) -> dict[str, str]:
    """The encoder's options: quality, the bitrate cap, fixed keyframe intervals without scene cuts.

    ``colour``: what an HDR-keeping rendition's pictures are (:func:`operators.media.colour.output_for`).
    """
    # Keyframes are forced on the grid (and at chunk starts); the encoder's own interval only backs it up.
    g = str(2 * r.gop_frames)
    cap = r.max_bitrate
    if r.codec == "h264":
        opts = {"preset": r.encoder_preset, "crf": str(r.crf), "profile": "high", "g": g, "keyint_min": "1",
                "sc_threshold": "0", "forced-idr": "1", "threads": str(threads)}
        if cap:
            opts.update(maxrate=str(cap), bufsize=str(2 * cap))
        return opts
    if r.codec == "hevc":
        params = (f"keyint={g}:min-keyint=1:scenecut=0:open-gop=0:log-level=error:pools={threads}"
                  f":frame-threads={min(threads, 2)}")
        if cap:
            params += f":vbv-maxrate={cap // 1000}:vbv-bufsize={2 * cap // 1000}"
        if r.hdr:
            # x265 writes its own VUI from its params, not from the stream's tags: name them here too.
            params += (f":colorprim={colour.primaries}:transfer={colour.transfer}"
                       f":colormatrix={_X265_MATRICES.get(colour.matrix, colour.matrix)}:range=limited")
            if colour.transfer == "smpte2084":
                params += ":hdr10=1"  # HDR10 signalling (the source's mastering metadata is not carried)
        return {"preset": r.encoder_preset, "crf": str(r.crf), "forced-idr": "1", "x265-params": params}
    if r.codec == "vp9":
        # Constrained quality: crf, with b as the ceiling (0: unconstrained).
        return {"deadline": "good", "cpu-used": r.encoder_preset, "crf": str(r.crf), "b": str(cap or 0),
                "g": g, "keyint_min": "1", "row-mt": "1", "threads": str(threads)}
    params = f"lp={threads}:scd=0" + (f":mbr={cap // 1000}" if cap else "")
    return {"preset": r.encoder_preset, "crf": str(r.crf), "g": g, "svtav1-params": params}


def upright_filter(rotation: int) -> str | None:
    """The libavfilter chain that turns a coded picture the way its display matrix says."""
    return {90: "transpose=cclock", 180: "hflip,vflip", 270: "transpose=clock"}.get(rotation % 360)


class FrameFilter:
    """A one-input libavfilter chain for video frames, built on the first frame it sees.

    ``to_output``: the chain's first ``scale`` also converts from the first frame's colours to
    the delivery's (BT.709 limited range, HDR tone-mapped unless ``keep_hdr``:
    :func:`operators.media.colour.managed_chain`).
    """

    def __init__(self, chain: str, to_output: bool = False, keep_hdr: bool = False) -> None:
        self.chain, self.to_output, self.keep_hdr = chain, to_output, keep_hdr
        self.graph: Any = None
        self.source: Any = None
        self.sink: Any = None

    def __call__(self, frame: Any) -> list[Any]:
        if self.graph is None:
            fmt = "yuv420p10le" if self.keep_hdr else "yuv420p"
            filters = (managed_chain(self.chain, colour_of(frame), fmt, self.keep_hdr) if self.to_output else
                       [(name, args) for name, _, args in (part.partition("=") for part in self.chain.split(","))])
            self.graph, self.source, self.sink = build_graph(frame, filters, threads=None)
        self.source.push(frame)
        return list(drain(self.graph, self.sink))


class _Encoder(EncodedOutput):
    """One rendition's encoder and chunk file."""

    def __init__(self, path: Any, r: Rendition, video: VideoStreamInfo, threads: int) -> None:
        self.r, self.threads = r, threads
        self.format = "yuv420p10le" if r.hdr else "yuv420p"
        self.tb = video.tb if r.rate is None else 1 / r.rate
        rate = video.rate if r.rate is None else r.rate
        self.container = av.open(str(path), "w", format=r.container,
                                 options=mp4_options(self.tb) if r.container == "mp4" else {})
        self._closed = False
        try:
            self.stream = self.container.add_stream(ENCODERS[r.codec], rate=rate)
            cc = self.stream.codec_context
            cc.width, cc.height, cc.pix_fmt = r.width, r.height, self.format
            cc.time_base = self.tb
            tag_output(cc)  # what the scale below writes, whatever the source was (HDR kept: see encode)
            self.stream.time_base = self.tb
            self.stream.options = encoder_options(r, threads)
            if r.codec == "hevc":
                self.stream.codec_tag = "hvc1"  # Apple players want the parameter sets out of band
        except BaseException:
            self.abort()
            raise
        # Scale (or pad / crop) and convert to BT.709 limited range in one graph; HDR is tone-mapped.
        self.scale = (FrameFilter(r.vf, to_output=True, keep_hdr=r.hdr) if r.vf else
                      ColourScaler(r.width, r.height, self.format, keep_hdr=r.hdr))
        self.count = 0
        #: Seconds between keyframes on the output's grid, and the grid cell of the last frame.
        self.gop = Fraction(r.gop_frames) / rate
        self._cell: int | None = None
        self.first: int | None = None
        self.last = 0

    def encode(self, frame: Any, pts: int) -> None:
        if self.count == 0 and self.r.hdr:
            # Whether HDR is kept depends on the source's pictures, known at the first frame; the
            # encoder opens at its first frame too, so its tags and options can still change.
            colour = output_for(colour_of(frame), keep_hdr=True)
            tag_output(self.stream.codec_context, colour)
            self.stream.options = encoder_options(self.r, self.threads, colour)
        if isinstance(self.scale, FrameFilter):
            (out,) = self.scale(frame) or (None,)
            if out is None:
                raise MediaError(f"The {self.r.width}x{self.r.height} filter chain gave no picture")
        else:
            out = self.scale(frame)  # the frame itself when it is already the output's size and colours
        out.pts, out.time_base = pts, self.tb
        # Keyframes at the chunk's start and on a grid of gop_frames over the whole output: the same
        # frames in every rendition of a task, and regular segments wherever the chunks were cut.
        cell = math.floor(pts * self.tb / self.gop) if self.r.rate is None else (pts // self.r.gop_frames)
        out.pict_type = PictureType.I if self.count == 0 or cell != self._cell else PictureType.NONE
        self._cell = cell
        self.container.mux(self.stream.encode(out))
        self.first = pts if self.first is None else self.first
        self.last = pts
        self.count += 1


def _source_frames(frames: ChunkFrames, turn: FrameFilter | None) -> Iterator[Any]:
    """The chunk's frames (damaged ones filled, interlaced ones deinterlaced: ingest's rules), upright."""
    for frame in frames:
        pts = frame.pts
        for upright in (turn(frame) if turn is not None else [frame]):
            upright.pts = pts
            yield upright


@operator("export.encode_chunk", weight=10, version=1)
def encode_chunk(source: SourceRef, task: VideoTask, info: MediaInfo, *, ctx: OpContext) -> ChunkEncodes:
    """Encode one chunk to every rendition of its task (video only)."""
    video = info.video
    if video is None:
        raise MediaError("The source has no video stream to encode")
    chunk = task.chunk
    origin = video.start_pts
    tb = video.tb
    threads = codec_threads(None)
    progress = Progress(ctx)
    started, cpu = time.monotonic(), time.process_time()
    paths = {r.key: ctx.output_path(f"export/chunks/{r.key}/{chunk.index:05d}.{r.container}") for r in task.renditions}
    # Output frames of the renditions at another rate that this chunk owns.
    # A variable-rate source: FFmpeg's fps rule (each source frame on the output frame nearest its time,
    # media.transcode.constant_rate), so its chunks own the output frames their source frames land on.
    spans = {r.key: output_span(chunk, video, r.rate, r.frames) if video.is_vfr else
             output_frames((chunk.start_pts - origin) * tb, (chunk.end_pts - origin) * tb, r.rate, r.frames)
             for r in task.renditions if r.rate is not None}
    counted = 0
    with ExitStack() as stack:
        local = stack.enter_context(ctx.storage.reading(source.path))
        container = stack.enter_context(open_input(local))
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        encoders = []
        for r in task.renditions:
            encoders.append(enc := _Encoder(stack.enter_context(ctx.storage.writing(paths[r.key])), r, video, threads))
            # Unwound before its storage block: on a failure the file is closed first, then removed
            # (ingest's transcode does the same); after close() it does nothing.
            stack.callback(enc.abort)
        held: Any = None
        rotation = upright_filter(video.rotation)
        frames = ChunkFrames(container, stream, chunk, video.interlaced)
        for frame in _source_frames(frames, FrameFilter(rotation) if rotation else None):
            t = (frame.pts - origin) * tb
            for enc in encoders:
                if enc.r.rate is None:
                    enc.encode(frame, frame.pts)
                elif held is not None:
                    until = Fraction(tick_of(t, enc.r.rate)) / enc.r.rate if video.is_vfr else t
                    _hold(enc, held, spans[enc.r.key], until)
            held = frame
            counted += 1
            progress(counted / max(1, chunk.frame_count))
        Damage.check(frames.filled, video.frame_count, "video frames")
        if counted != chunk.frame_count:
            raise MediaError(
                f"Chunk {chunk.index + 1}/{chunk.count} ({chunk.start:.2f}s–{chunk.end:.2f}s) decoded to {counted} "
                f"frames but the source holds {chunk.frame_count} there: the source is damaged in that range")
        for enc in encoders:
            if enc.r.rate is not None:
                _hold(enc, held, spans[enc.r.key], None)
            enc.close()
    parts = []
    for enc in encoders:
        r = enc.r
        expected = chunk.frame_count if r.rate is None else spans[r.key][1] - spans[r.key][0]
        if enc.count != expected:
            raise MediaError(f"Chunk {chunk.index + 1}: the {r.width}x{r.height} {r.codec} rendition got "
                             f"{enc.count} frames, not {expected}")
        out_tb = tb if r.rate is None else 1 / r.rate
        parts.append(EncodedPart(rendition=r.key, chunk=chunk.index, chunks=chunk.count, path=paths[r.key],
                                 frames=enc.count, first=enc.first if enc.first is not None else 0, last=enc.last,
                                 time_base=f"{out_tb.numerator}/{out_tb.denominator}"))
    used = time.process_time() - cpu
    if frames.filled or frames.damage.packets:
        ctx.log(f"Chunk {chunk.index + 1}/{chunk.count}: {frames.damage.packets} damaged video packets could not be "
                f"decoded; {frames.filled} frames show the frame before them instead")
    names = ", ".join(f"{r.codec} {r.width}x{r.height}" for r in task.renditions)
    ctx.log(f"Encoded chunk {chunk.index + 1}/{chunk.count} ({counted} frames) to {names} at "
            f"{counted / max(time.monotonic() - started, 1e-6):.0f} fps, {used:.2f} CPU-s")
    progress.done()
    return ChunkEncodes(task=task.index, chunk=chunk, parts=parts, cpu_seconds=used)


def _hold(enc: _Encoder, frame: Any, span: tuple[int, int], until: Fraction | None) -> None:
    """Encode the output frames in ``span`` whose time is before ``until`` (None: all left) from ``frame``."""
    rate = enc.r.rate
    assert rate is not None
    k = span[0] + enc.count
    while k < span[1] and (until is None or Fraction(k) / rate < until):
        enc.encode(frame, k)
        k += 1
