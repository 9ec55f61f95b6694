"""PyAV plumbing shared by the media operators: opening inputs, readable errors, progress, sizes.

Nothing here is an operator (the leading underscore keeps the registry loader away).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np

from operators.context import OpContext, cores_per_task
from operators.errors import MediaError
from operators.media.damage import DAMAGE_LIMIT, Damage, decode_tolerant, fill_gaps
from operators.media.colour import ColourScaler, build_graph

__all__ = [
    "DAMAGE_LIMIT",
    "Damage",
    "EncodedOutput",
    "Deinterlacer",
    "decode_tolerant",
    "FFMPEG_LOG_LEVEL",
    "codec_threads",
    "configure_ffmpeg_log",
    "coded_size",
    "encode_jpeg",
    "even",
    "fill_gaps",
    "fit_height",
    "frame_rotation",
    "frame_to_rgb",
    "media_error",
    "mp4_options",
    "open_input",
    "Progress",
    "rotate_rgb",
    "Scaler",
]

# Formats FFmpeg will happily "open" that are not audio or video for our purposes.
_NOT_MEDIA_FORMATS = {"tty"}
_NOT_MEDIA_CODECS = {"ansi", "bintext", "xbin", "idf"}


def _describe(exc: BaseException) -> str:
    """The most useful line of an FFmpeg error: the demuxer's own complaint when there is one."""
    for arg in getattr(exc, "args", ())[3:]:
        if isinstance(arg, tuple) and len(arg) == 3 and isinstance(arg[2], str):
            return arg[2].strip()
    return getattr(exc, "strerror", None) or str(exc)


def _mp4_without_index(path: Path | str) -> bool:
    """An ISO media file (MP4, MOV, M4A: ``ftyp`` first) whose top-level boxes hold no ``moov``: the index an
    interrupted recording or upload never got. FFmpeg says "moov atom not found" only in its log."""
    try:
        with open(path, "rb") as f:
            first = True
            while header := f.read(8):
                if len(header) < 8:
                    return not first
                size, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if first and kind != b"ftyp":
                    return False
                first = False
                if kind == b"moov":
                    return False
                if size == 1:
                    size = int.from_bytes(f.read(8), "big") - 8
                if size < 8:  # a damaged size (or 0, "to the end"): no moov can be found past it
                    return True
                f.seek(size - 8, 1)
    except OSError:
        return False
    return not first


def media_error(what: str, exc: BaseException, path: Path | str | None = None) -> MediaError:
    detail = "moov atom not found" if path is not None and _mp4_without_index(path) else _describe(exc)
    hint = "it is truncated or corrupt" if isinstance(exc, av.error.InvalidDataError | av.error.EOFError) else "it is damaged or in an unsupported format"
    return MediaError(f"{what}: {hint} ({detail})")


#: FFmpeg's log level in every process: None, PyAV's own default, which installs no log callback at all.
FFMPEG_LOG_LEVEL: int | None = None
_log_configured = False
_log_lock = threading.Lock()


def configure_ffmpeg_log() -> None:
    """Set FFmpeg's log level for the whole process, once, and never per task; later calls do nothing.

    The level and PyAV's log callback are one per process, while codecs and libavfilter log from their own
    threads: a level changed around one task changes it under every task running then (issue 20: loudness
    measurements lost to a neighbour's restore). And any level at all installs PyAV's callback, which takes
    the GIL from FFmpeg's threads: with frame-threaded decoders that deadlocked workers outright (a
    generate_clip job hung in its reframe step; PyAV's issues #751 and #2276). So the log stays off, as
    PyAV ships it, and the few error details people act on are found without it (:func:`media_error`).
    A level someone already chose (``av.logging.set_level`` before this module is imported, to debug) is kept.
    """
    global _log_configured
    with _log_lock:
        if _log_configured:
            return
        _log_configured = True
        if av.logging.get_level() is None:
            av.logging.set_level(FFMPEG_LOG_LEVEL)


configure_ffmpeg_log()


def _looks_like_text(path: Path | str) -> bool:
    # FFmpeg picks a demuxer by extension when nothing matches, so a text file named .mp4
    # fails with "moov atom not found"; say what it really is instead.
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sum(ch.isprintable() or ch in "\r\n\t" for ch in text) / len(text) > 0.95


@contextmanager
def open_input(path: Path | str, what: str = "The source file could not be read as media") -> Iterator[Any]:
    """``av.open`` for reading; every failure becomes a :class:`MediaError` a person can act on."""
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.error.FileNotFoundError as exc:
        raise MediaError(f"{what}: the file does not exist") from exc
    except av.error.FFmpegError as exc:
        if _looks_like_text(path):
            raise MediaError(f"{what}: it looks like a text file, not audio or video") from None
        if Path(path).stat().st_size == 0:
            raise MediaError(f"{what}: the file is empty") from None
        raise media_error(what, exc, path) from None
    with container:
        if container.format.name in _NOT_MEDIA_FORMATS or any(
            s.codec_context is not None and s.codec_context.name in _NOT_MEDIA_CODECS for s in container.streams
        ):
            raise MediaError(f"{what}: it looks like a text file, not audio or video")
        try:
            yield container
        except av.error.FFmpegError as exc:
            raise media_error(what, exc) from None


class EncodedOutput:
    """Closing one encoder's output file: flushed when it is done, or closed as it is after a failure.

    Holders set ``container``, ``stream`` and ``_closed``. :meth:`abort` closes the file without the flush
    (a failed encoder can refuse it), before its storage block discards the temp path; then it is a no-op.
    """

    container: Any
    stream: Any
    _closed: bool

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


class Deinterlacer:
    """``bwdif`` for interlaced sources, whose outputs (proxies, exports) are all progressive.

    One frame per frame (``send_frame``: the rate and frame count stay), each field order as the
    decoder flags it, and only the frames flagged interlaced are touched (``deint=interlaced``), so a
    source that mixes progressive and interlaced frames keeps its progressive ones as they are. bwdif
    looks one frame ahead: a frame comes out when the next one goes in, and :meth:`flush` gives the last.
    Frames keep their own pts and time base (bwdif halves its output's time base, for field rates).
    """

    def __init__(self) -> None:
        self._graph: tuple[Any, Any, Any] | None = None
        self._times: deque[tuple[Any, Any]] = deque()

    def __call__(self, frame: Any) -> list[Any]:
        if self._graph is None:
            self._graph = build_graph(frame, [("bwdif", "mode=send_frame:parity=auto:deint=interlaced")])
        self._times.append((frame.pts, frame.time_base))
        self._graph[1].push(frame)
        return self._drain()

    def flush(self) -> list[Any]:
        if self._graph is None:
            return []
        self._graph[1].push(None)
        return self._drain()

    def _drain(self) -> list[Any]:
        assert self._graph is not None
        out = []
        while True:
            try:
                frame = self._graph[2].pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            # One frame out per frame in, in order (send_frame).
            frame.pts, time_base = self._times.popleft()
            if time_base is not None:
                frame.time_base = time_base
            out.append(frame)


def codec_threads(asked: int | None, default: int = 2) -> int:
    """Threads for one decoder or encoder of a task: ``asked``, else the cores a task may use.

    Codec threads beyond a task's share of the cores only contend with the task next to it:
    two workers on 2 cores, each transcoding a chunk with 2 decoder and 2 x264 threads, spent
    23.7 CPU-s and 12.5 s on a minute of 1080p where 1 and 1 spent 22.6 CPU-s and 11.3 s.
    Outside a cluster that says otherwise (a direct call, a test) ``default`` threads are used.
    """
    return asked if asked is not None else cores_per_task(default)


class Progress:
    """Calls ``ctx.progress`` at most every ``interval`` seconds (events are not free)."""

    def __init__(self, ctx: OpContext | None, interval: float = 0.5) -> None:
        self.ctx, self.interval, self._last = ctx, interval, time.monotonic()

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if self.ctx is not None and now - self._last >= self.interval:
            self._last = now
            self.ctx.progress(fraction)

    def done(self) -> None:
        if self.ctx is not None:
            self.ctx.progress(1.0)


def mp4_options(time_base: Fraction, faststart: bool = False) -> dict[str, str]:
    """MP4 muxer options that keep timestamps exact.

    An edit list (written whenever the first frame is not at 0, or B-frames make the first
    dts negative) is stored in the movie time scale, 1/1000 s by default, which shifts
    29.97 fps frames by a fraction of a tick; using the video's own time scale keeps it exact.
    """
    options = {"movie_timescale": str(time_base.denominator)}
    if faststart:
        options["movflags"] = "+faststart"
    return options


def even(value: float) -> int:
    """Nearest even integer, at least 2: 4:2:0 chroma and most encoders need even sizes."""
    return max(2, int(round(value / 2.0)) * 2)


def fit_height(display_w: int, display_h: int, height: int) -> tuple[int, int]:
    """Display size scaled to ``height`` (never above the source), aspect kept, both even."""
    h = even(min(height, display_h))
    w = even(display_w * h / display_h)
    return w, h


def coded_size(display_size: tuple[int, int], rotation: int) -> tuple[int, int]:
    """The stored picture size that shows as ``display_size`` once turned by ``rotation``."""
    w, h = display_size
    return (h, w) if rotation % 180 else (w, h)


def rotate_rgb(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded picture the way a player would (``rotation`` is counter-clockwise)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=k)) if k else image


def frame_rotation(rotation: float | int | None) -> int:
    """Snap a display-matrix angle to 0/90/180/270 counter-clockwise."""
    return int(round((rotation or 0) / 90.0)) % 4 * 90


class Scaler:
    """One reusable swscale context: ``frame.reformat`` builds a new one for every frame.

    ``VideoFrame.reformat`` gives each decoded frame its own ``VideoReformatter``, so every
    call sets up swscale again (filter tables, and a thread pool of one thread per CPU when
    ``threads`` is left at 0); at 1080p→720p that doubled the cost of scaling. A scaler kept
    for a whole chunk pays that once. ``threads=1`` by default: the workers already keep
    every core busy with chunks, so slice threads would only contend with them.
    """

    def __init__(self, width: int, height: int, format: str = "yuv420p", interpolation: str = "BICUBIC",
                 threads: int = 1) -> None:
        from av.video.reformatter import VideoReformatter

        self.width, self.height, self.format, self.interpolation = width, height, format, interpolation
        self.threads = threads
        self._reformatter = VideoReformatter()

    def __call__(self, frame: Any) -> Any:
        return self._reformatter.reformat(frame, self.width, self.height, self.format,
                                          interpolation=self.interpolation, threads=self.threads)


def encode_jpeg(rgb: np.ndarray, path: Path, quality: int = 4) -> None:
    """Write an RGB array as a baseline JPEG with FFmpeg's mjpeg encoder (``quality``: 2 best .. 31)."""
    # JFIF's colours, which every image reader assumes: BT.601, full range.
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuvj420p", dst_colorspace="ITU601", dst_color_range="JPEG")
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = frame.width, frame.height, "yuvj420p"
    cc.colorspace, cc.color_range = 5, 2  # BT.470BG (BT.601) matrix, full range
    cc.time_base = Fraction(1, 25)
    cc.qscale = True
    cc.global_quality = quality * 118  # FF_QP2LAMBDA: mjpeg reads quality as a lambda.
    frame.pts = 0
    # An mjpeg packet is a complete JFIF image, so no muxer is needed.
    data = b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])
    path.write_bytes(data)


def frame_to_rgb(frame: Any, width: int, height: int, rotation: int,
                 scaler: ColourScaler | None = None) -> np.ndarray:
    """Scale a decoded frame (coded orientation) and turn it upright, as an RGB array.

    The source's own matrix, range and transfer are read (``colour.ColourScaler``): a bare
    ``reformat`` reads every untagged picture as BT.601 and leaves HDR untouched. ``scaler``: a
    ``ColourScaler`` to reuse (a sprite's tiles), else one is made for this frame.
    """
    coded_w, coded_h = coded_size((width, height), rotation)
    if scaler is None or (scaler.width, scaler.height) != (coded_w, coded_h):
        scaler = ColourScaler(coded_w, coded_h, "rgb24")
    return rotate_rgb(scaler(frame).to_ndarray(), rotation)
