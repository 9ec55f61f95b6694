"""Reading the source frames a segment shows: decode only the ranges it needs, frame-exact.

A :class:`ClipReader` opens one video clip's source, seeks to the keyframe before the first
time it needs and decodes forward; for each output frame it hands out the source frame
nearest to the wanted time (ties go to the later frame), so a 25 fps source in a 30 fps
timeline repeats frames where it must and a 60 fps one skips them, without drift: the wanted
times are exact fractions. Where the seek lands past that time (a TS with one keyframe, say), it
seeks further back, to the file's start at worst. Interlaced frames are deinterlaced (``bwdif``)
as they are decoded; packets the decoder rejects are skipped and counted (:class:`Damage`).

The picture is then cropped (a rectangle in source fractions), fitted (cover, contain, fill)
and scaled with one reusable swscale context per clip and segment, which also converts it from
the source's colours to the canvas's (BT.709 limited range; HDR tone-mapped: ``media.colour``).
Crops and fits are reckoned in the picture as shown: anamorphic pixels (SAR) are not square.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from operators.errors import MediaError
from operators.media._av import codec_threads, media_error, open_input
from operators.media.colour import Colour, build_graph, colour_filters, colour_of
from operators.media.info import VideoStreamInfo
from operators.render.composite import Picture
from operators.render.resolve import VisualLayer
from operators.render.text import anchor
from operators.render.timeline import CropRect

__all__ = ["ClipReader", "DAMAGE_SHARE", "Damage", "Fitter", "Placement", "picture_of", "place"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a clip's picture comes from in the source and where it lands on the canvas (pixels)."""

    crop: tuple[int, int, int, int]  # x, y, w, h in the coded picture, even
    size: tuple[int, int]  # scaled picture size, even
    at: tuple[int, int]  # top-left on the canvas, even

    def covers(self, width: int, height: int) -> bool:
        x, y = self.at
        return x <= 0 and y <= 0 and x + self.size[0] >= width and y + self.size[1] >= height


def _even_down(value: float) -> int:
    return max(0, int(math.floor(value / 2)) * 2)


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def place(layer: VisualLayer, crop: CropRect | None, src: tuple[int, int], canvas: tuple[int, int],
          aspect: Fraction = Fraction(1)) -> Placement:
    """Crop, fit and position one clip: ``cover`` fills the box (cutting the excess, centred),
    ``contain`` fits inside it, ``fill`` stretches; the box is the canvas times ``scale``.

    ``aspect`` is the width of one of ``src``'s pixels over its height as shown (the SAR, upright):
    the fit is reckoned in shown units, the crop then turned back into pixels.
    """
    spec = layer.clip_spec
    sw, sh = src
    ax = float(aspect) if aspect > 0 else 1.0
    rect = crop or CropRect()
    cx, cy, cw, ch = rect.x * sw * ax, rect.y * sh, rect.width * sw * ax, rect.height * sh
    bw, bh = canvas[0] * spec.scale, canvas[1] * spec.scale
    if spec.fit == "cover":
        # Trim the crop to the box's shape around its centre, then it scales to the box exactly.
        if cw / ch > bw / bh:
            new_w = ch * bw / bh
            cx, cw = cx + (cw - new_w) / 2, new_w
        else:
            new_h = cw * bh / bw
            cy, ch = cy + (ch - new_h) / 2, new_h
        size = (_even(bw), _even(bh))
    elif spec.fit == "contain":
        s = min(bw / cw, bh / ch)
        size = (_even(cw * s), _even(ch * s))
    else:
        size = (_even(bw), _even(bh))
    cx, cw = cx / ax, cw / ax
    x, y = _even_down(cx), _even_down(cy)
    w, h = min(_even(cw), sw - x), min(_even(ch), sh - y)
    w, h = w - w % 2, h - h % 2
    at = anchor(size, canvas, spec.position, (spec.offset.x, spec.offset.y))
    return Placement(crop=(x, y, w, h), size=size, at=at)


#: The share of a clip's frames whose packets may fail to decode before the render gives up on it.
DAMAGE_SHARE = 0.05
#: Where a seek two frames before the wanted time lands past it (a TS seeks by searching timestamps,
#: not an index, and its keyframe may be far behind), how much further back the next try seeks;
#: the last try decodes from the file's start.
_SEEK_BACK = Fraction(10)
#: AVFieldOrder: TT, BB, TB, BT (interlaced); TT and BT show the top field first.
_INTERLACED_ORDERS = {2: "tff", 3: "bff", 4: "bff", 5: "tff"}


class Damage:
    """Packets of one clip the decoder rejected: skipped as FFmpeg's players skip them, until they are
    more than :data:`DAMAGE_SHARE` of the clip's frames (then the picture is more damage than source)."""

    def __init__(self, label: str, frames: int) -> None:
        self.label, self.frames = label, max(1, frames)
        self.allowed = int(self.frames * DAMAGE_SHARE)
        self.count = 0
        self.first: Fraction | None = None
        self.last: Fraction | None = None
        self.detail = ""

    def add(self, when: Fraction, exc: BaseException) -> None:
        self.count += 1
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)
        self.detail = self.detail or str(getattr(exc, "strerror", None) or exc)
        if self.count > self.allowed:
            # Said as soon as it is so: decoding on to count the rest would only delay the failure.
            raise MediaError(
                f"{self.label}: {self.count} video packets from {float(self.first):.2f}s to {float(self.last):.2f}s "
                f"could not be decoded ({self.detail}), more than the {DAMAGE_SHARE:.0%} of the clip's "
                f"{self.frames} frames a render plays through: the source is damaged from {float(self.first):.2f}s. "
                "Upload the original file again, or trim the clip to leave that part out")

    def summary(self) -> str | None:
        """The log line for damage skipped (None: none was, or too much was, and the render failed saying so)."""
        if not self.count or self.count > self.allowed:
            return None
        assert self.first is not None and self.last is not None
        return (f"{self.label}: skipped {self.count} damaged video packet{'s' * (self.count != 1)} from "
                f"{float(self.first):.2f}s to {float(self.last):.2f}s ({self.detail}); the picture may show "
                "blocks or hold a frame there")


class _Deinterlacer:
    """``bwdif`` over consecutive decoded frames (it reads the frames either side, so it runs here, on
    every frame in order, and not in the per-output-frame fit, which repeats and skips frames).

    It waits for one frame ahead: :meth:`flush` hands out the last. ``send_frame``: one progressive
    frame per frame, with its pts. Only frames flagged interlaced are touched, unless the stream's
    field order says interlaced while its frames say nothing: then all are.
    """

    def __init__(self, frame: Any, field_order: int) -> None:
        self.key = (frame.width, frame.height, frame.format.name)
        flagged = bool(frame.interlaced_frame)
        parity = "auto" if flagged else _INTERLACED_ORDERS.get(field_order, "auto")
        deint = "interlaced" if flagged else "all"
        # The graph is kept: its filters live only as long as it does.
        self.graph, self.source, self.sink = build_graph(
            frame, [("bwdif", f"mode=send_frame:parity={parity}:deint={deint}")])

    def __call__(self, frame: Any | None) -> list[Any]:
        self.source.push(frame)
        out = []
        while True:
            try:
                out.append(self.sink.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out

    def flush(self) -> list[Any]:
        return self(None)


class ClipReader:
    """Decodes one clip's source forward from a seek; ``picture(k)`` is output frame k's picture."""

    def __init__(self, local: Any, layer: VisualLayer, video: VideoStreamInfo, fps: Fraction,
                 canvas: tuple[int, int], first: int, log: Callable[[str], None] | None = None) -> None:
        self.layer, self.video, self.fps, self.canvas = layer, video, fps, canvas
        self.label = f"track {layer.track + 1} clip {layer.clip + 1} (asset {layer.asset_id})"
        self._log, self._local = log, local
        self._stack = ExitStack()
        self._open()
        self.tb = self.stream.time_base
        # The container's SAR (MP4 pasp) first, then the bitstream's, as FFmpeg's players guess it.
        sar = self.stream.sample_aspect_ratio or self.stream.codec_context.sample_aspect_ratio or Fraction(1)
        self.sar = Fraction(sar) if sar > 0 else Fraction(1)
        self._fresh = True  # nothing read yet: the demuxer is at the file's start
        self._origin = video.start_pts
        self.damage = Damage(self.label, math.ceil(layer.frames * video.rate / fps))
        self._frames = self._decode(layer.source_time(first, fps))
        # (source seconds, frame): the time is kept apart because the encoder's caller
        # re-stamps a frame it passes through with its output pts.
        self._prev: tuple[Fraction, Any] | None = None
        self._cur: tuple[Fraction, Any] | None = next(self._frames, None)
        self._fit = Fitter(video.rotation)
        self._placements: dict[Any, Placement] = {}
        self._last: tuple[Any, Any] | None = None

    def close(self) -> None:
        self._stack.close()
        line = self.damage.summary()
        if line and self._log is not None:
            self._log(line)
            self._log = None

    def _open(self) -> None:
        self._stack.close()
        self.container = self._stack.enter_context(open_input(self._local,
                                                              f"The source of {self.label} could not be read"))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = codec_threads(None)

    def _time(self, frame: Any) -> Fraction:
        return (frame.pts - self._origin) * self.tb

    def _decode(self, start: Fraction) -> Iterator[tuple[Fraction, Any]]:
        """Frames from before ``start`` on: the first seek whose first frame is not past ``start`` wins."""
        # Two frames early: the frame before the wanted time must be there to compare with.
        tries = [at for at in (start - 2 / self.video.rate, start - _SEEK_BACK) if at > 0]
        for at in [*tries, None]:
            frames = self._read(at)
            head = next(frames, None)
            if at is not None and (head is None or head[0] > start):
                # Landed past the wanted time (or in a stretch with no keyframe to start from).
                frames.close()
                continue
            if head is not None:
                yield head
                yield from frames
            return

    def _read(self, at: Fraction | None) -> Iterator[tuple[Fraction, Any]]:
        """Decoded (time, frame) pairs from a seek to ``at`` seconds (None: the file's start), progressive."""
        when = at or Fraction(0)
        try:
            if at is not None:
                try:
                    self.container.seek(self._origin + int(at / self.tb), stream=self.stream, backward=True,
                                        any_frame=False)
                except av.error.FFmpegError:
                    return  # the next try seeks further back
            elif not self._fresh:
                # Opened again, not sought to the start: a TS seeks by searching timestamps and can land
                # past its only keyframe even when asked for the first frame's time.
                self._open()
            self._fresh = False
            deinterlace: _Deinterlacer | None = None
            order = self.stream.codec_context.field_order or 0
            for packet in self.container.demux(self.stream):
                if packet.pts is not None:
                    when = self._time(packet)
                try:
                    decoded = self.stream.decode(packet)
                except av.error.FFmpegError as exc:
                    self.damage.add(when, exc)  # raises past the share the render skips
                    continue
                for frame in decoded:
                    if frame.pts is None:
                        continue
                    flushed = []
                    if deinterlace is not None and deinterlace.key != (frame.width, frame.height, frame.format.name):
                        flushed, deinterlace = deinterlace.flush(), None  # a new size: a new graph
                    if deinterlace is None and (frame.interlaced_frame or order in _INTERLACED_ORDERS):
                        deinterlace = _Deinterlacer(frame, order)
                    out = [*flushed, *(deinterlace(frame) if deinterlace is not None else [frame])]
                    for shown in out:
                        yield self._time(shown), shown
            for shown in deinterlace.flush() if deinterlace is not None else ():
                yield self._time(shown), shown
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001  (any demuxer or filter failure is the source's)
            near = float(self._cur[0]) if self._cur is not None else float(when)
            raise media_error(f"{self.label}: the source could not be decoded near {near:.2f}s", exc) from None

    def frame_at(self, t: Fraction) -> tuple[Fraction, Any]:
        """The source frame nearest to ``t`` seconds (ties: the later one), with its time."""
        while self._cur is not None and self._cur[0] < t:
            self._prev, self._cur = self._cur, next(self._frames, None)
        if self._cur is None and self._prev is None:
            raise MediaError(f"{self.label}: no video frame could be decoded at {float(t):.2f}s")
        if self._cur is None:
            assert self._prev is not None
            # The last frame shows until its own end; far past it, the file ended early.
            if t - self._prev[0] > 2 / self.video.rate:
                raise MediaError(f"{self.label}: the source ends at {float(self._prev[0]):.2f}s, before "
                                 f"{float(t):.2f}s: the file is truncated or damaged there")
            return self._prev
        if self._prev is None or self._cur[0] - t <= t - self._prev[0]:
            return self._cur
        return self._prev

    def picture(self, k: int) -> tuple[Any, Placement, bool]:
        """Output frame ``k``'s picture (a yuv420p frame), where it goes, and whether it is fresh.

        A fresh picture is a new buffer no one else holds: it may be drawn on in place. The
        decoder's own frames are not (H.264 keeps them as references for the next frames),
        nor is one handed out before (a slower source repeats it).
        """
        when, frame = self.frame_at(self.layer.source_time(k, self.fps))
        crop = self.layer.crop_at(k, self.fps)
        key = (frame.width, frame.height, crop)
        placement = self._placements.get(key)
        if placement is None:
            # Crops and fits are in the picture as a player shows it: turned by the display matrix.
            turned = self.video.rotation % 180
            shown = (frame.height, frame.width) if turned else (frame.width, frame.height)
            aspect = 1 / self.sar if turned else self.sar
            placement = self._placements[key] = place(self.layer, crop, shown, self.canvas, aspect)
        if self._last is not None and self._last[0] == (when, placement):
            return self._last[1], placement, False
        pic = self._fit(frame, placement)
        self._last = ((when, placement), pic)
        return pic, placement, pic is not frame


_TURNS: dict[int, tuple[tuple[str, str], ...]] = {
    90: (("transpose", "cclock"),), 180: (("hflip", ""), ("vflip", "")), 270: (("transpose", "clock"),)}


class Fitter:
    """Crop and scale with libavfilter: ``crop`` only moves plane pointers (no copy) and
    ``scale`` is swscale, in C, with one graph reused per crop, size and source format.

    A numpy crop cost a full-frame copy in and out of Python per frame (0.35 ms of every
    3 ms outside the encoder at 1080x1920); the graph does the same work in one pass.
    """

    #: Graphs kept per clip: a crop path eased every frame makes a new one each frame.
    KEEP = 8

    def __init__(self, rotation: int = 0) -> None:
        self.rotation = rotation
        self._graphs: OrderedDict[tuple[Any, ...], tuple[Any, Any, Any]] = OrderedDict()

    def __call__(self, frame: Any, placement: Placement) -> Any:
        x, y, w, h = placement.crop
        colour = colour_of(frame)
        key = (frame.width, frame.height, frame.format.name, placement.crop, placement.size, colour)
        if not self.rotation and (x, y, w, h) == (0, 0, frame.width, frame.height) \
                and (frame.width, frame.height) == placement.size and frame.format.name == "yuv420p" \
                and colour.is_output:
            return frame
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._graph(frame, placement, self.rotation, colour)
            while len(self._graphs) > self.KEEP:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, src, sink = entry
        src.push(frame)
        return sink.pull()

    @staticmethod
    def _graph(frame: Any, placement: Placement, rotation: int, colour: Colour) -> tuple[Any, Any, Any]:
        x, y, w, h = placement.crop
        # Upright first, as ffmpeg's autorotate does (rotation is counter-clockwise).
        filters = list(_TURNS.get(rotation, ()))
        shown = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
        if (x, y, w, h) != (0, 0, *shown):
            filters.append(("crop", f"{w}:{h}:{x}:{y}:exact=1"))
        # The scale reads the source's colours and writes the canvas's (BT.709, limited range): a
        # scale left to the link's tags read BT.709 pictures as BT.601 (issue 19).
        filters.extend(colour_filters(colour, placement.size, "yuv420p", "bicubic"))
        return build_graph(frame, filters)


def picture_of(frame: Any) -> Picture:
    """Numpy views of a ``yuv420p`` frame's planes (no copy; writable)."""
    views = []
    for i, plane in enumerate(frame.planes):
        w, h = (frame.width, frame.height) if i == 0 else (frame.width // 2, frame.height // 2)
        views.append(np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:h, :w])
    return Picture(*views)
