"""``render.segment``: compose and encode one segment of output frames, video only.

For each output frame the tracks are drawn bottom to top: video and image clips (with fades,
crossfades, wipes and slides between neighbours on a track), then titles and captions where
their track sits. A frame that is exactly one opaque full-canvas picture goes to the encoder
as it is. Every segment is its own H.264 stream starting on a keyframe, with pts counted in
output frames, so ``render.join`` copies packets without touching timestamps.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from fractions import Fraction
from functools import lru_cache
from typing import Any

import av
from av.video.frame import PictureType
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, codec_threads, mp4_options
from operators.media.colour import ColourScaler, tag_output
from operators.media.info import AssetMedia
from operators.registry import operator
from operators.render.composite import Canvas, Picture, rgba_to_picture, solid_yuv
from operators.render.frames import ClipReader, Fitter, Placement, picture_of, place
from operators.render.plan import Overlay, RenderPlan, Segment
from operators.render.resolve import VisualLayer
from operators.render.text import anchor, rasterize
from operators.render.timeline import RenderOutput, parse_color
from operators.types import Frozen

__all__ = ["EncodeParams", "SegmentOutput", "render_segment", "segment_inputs"]


class EncodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Encoder threads; None: the cores one task may use (``_av.codec_threads``).
    threads: int | None = Field(None, ge=1, le=16)


class SegmentOutput(Frozen):
    index: int
    path: str
    start: int
    frames: int


def _fade(k: int, layer_start: int, layer_end: int, fade_in: int, fade_out: int) -> float:
    a = 1.0
    if fade_in and k - layer_start < fade_in:
        a = min(a, (k - layer_start + 0.5) / fade_in)
    if fade_out and layer_end - k <= fade_out:
        a = min(a, (layer_end - k - 0.5) / fade_out)
    return max(0.0, a)


class _Compositor:
    def __init__(self, plan: RenderPlan, segment: Segment, ctx: OpContext, stack: ExitStack) -> None:
        self.plan, self.spec, self.segment, self.ctx, self.stack = plan, plan.spec, segment, ctx, stack
        self.size = (self.spec.width, self.spec.height)
        self.canvas = Canvas(*self.size, solid_yuv(parse_color(self.spec.background)))
        self.layers = [v for v in self.spec.visual if v.start < segment.end and v.end > segment.start]
        self.overlays = [o for o in plan.overlays if o.start < segment.end and o.end > segment.start]
        self.readers: dict[int, ClipReader | Picture] = {}
        self.order = sorted({v.track for v in self.layers} | {o.track for o in self.overlays})

    def _reader(self, i: int, layer: VisualLayer, k: int) -> ClipReader | Picture:
        if i not in self.readers:
            asset: AssetMedia = self.plan.assets[layer.asset_id]  # type: ignore[assignment]
            try:
                local = self.stack.enter_context(self.ctx.storage.reading(layer.path))
            except FileNotFoundError:
                raise MediaError(f"track {layer.track + 1} clip {layer.clip + 1}: asset {layer.asset_id}'s file is "
                                 "missing from storage") from None
            if layer.image:
                self.readers[i] = _image(str(local))
            else:
                reader = ClipReader(local, layer, asset.info.video, self.spec.fps, self.size, k, log=self.ctx.log)
                self.stack.callback(reader.close)
                self.readers[i] = reader
        return self.readers[i]

    def _picture(self, i: int, layer: VisualLayer, k: int) -> tuple[Any, Placement, bool]:
        reader = self._reader(i, layer, k)
        if isinstance(reader, ClipReader):
            return reader.picture(k)
        return (*_placed_image(reader, layer, self.size), False)

    def frame(self, k: int) -> Any:
        """Output frame ``k``: an ``av.VideoFrame`` ready to encode."""
        draws = [(layer.track, (i, layer)) for i, layer in enumerate(self.layers) if layer.start <= k < layer.end]
        overlays = [o for o in self.overlays if o.start <= k < o.end]
        if len(draws) == 1 and all(o.track > draws[0][0] for o in overlays):
            i, layer = draws[0][1]
            frame, where, fresh = self._picture(i, layer, k)
            if self._alpha(layer, k) >= 1.0 and where.size == self.size and where.at == (0, 0) \
                    and layer.transition_in is None and self._outgoing(layer, k) is None:
                # One opaque full-canvas picture: titles and captions go straight onto it.
                if not overlays:
                    return frame
                if not fresh:
                    frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
                target = Canvas.on(picture_of(frame))
                for overlay in overlays:
                    self._draw_overlay(overlay, k, target)
                return frame
        self.canvas.clear()
        for track in self.order:
            for _, (i, layer) in (d for d in draws if d[0] == track):
                self._draw_clip(i, layer, k)
            for overlay in (o for o in overlays if o.track == track):
                self._draw_overlay(overlay, k, self.canvas)
        return av.VideoFrame.from_ndarray(self.canvas.buffer, format="yuv420p")

    def _alpha(self, layer: VisualLayer, k: int) -> float:
        return layer.clip_spec.opacity * _fade(k, layer.start, layer.end, layer.fade_in, layer.fade_out)

    def _draw_clip(self, i: int, layer: VisualLayer, k: int) -> None:
        frame, where, _ = self._picture(i, layer, k)
        pic = picture_of(frame)
        alpha = self._alpha(layer, k)
        x, y = where.at
        reveal = None
        incoming = layer.transition_in
        outgoing = self._outgoing(layer, k)
        if incoming and k < layer.start + incoming[1]:
            kind, n = incoming
            p = (k - layer.start + 0.5) / n
            if kind == "fade":
                alpha *= p
            else:
                x, y, reveal = _motion(kind, p, x, y, self.size, incoming_side=True)
        elif outgoing is not None:
            kind, p = outgoing
            if kind.startswith("slide"):
                x, y, _ = _motion(kind, p, x, y, self.size, incoming_side=False)
        self.canvas.draw(pic, x, y, alpha, reveal)

    def _outgoing(self, layer: VisualLayer, k: int) -> tuple[str, float] | None:
        """The transition the next clip on this track plays over this one at frame ``k``."""
        if not layer.transition_out or k < layer.end - layer.transition_out:
            return None
        nxt = next((v for v in self.spec.visual if v.track == layer.track and v.clip == layer.clip + 1), None)
        if nxt is None or nxt.transition_in is None:
            return None
        kind, n = nxt.transition_in
        return kind, (k - nxt.start + 0.5) / n

    def _draw_overlay(self, overlay: Overlay, k: int, target: Canvas) -> None:
        pic = _overlay_picture(overlay.lines, overlay.style, self.ctx.storage)
        ax, ay, aw, ah = overlay.area or (0, 0, *self.size)
        x, y = anchor(pic.size, (aw, ah), overlay.position, overlay.offset, overlay.margin)
        x, y = x + ax, y + ay
        alpha = overlay.opacity * _fade(k, overlay.start, overlay.end, overlay.fade_in, overlay.fade_out)
        target.draw(pic, x, y, alpha)


def _motion(kind: str, p: float, x: int, y: int, size: tuple[int, int],
            incoming_side: bool) -> tuple[int, int, tuple[int, int, int, int] | None]:
    """Position and visible region of a clip during a wipe or slide (xfade's names)."""
    w, h = size
    direction = kind.removeprefix("wipe").removeprefix("slide")
    if kind.startswith("wipe"):
        edge = {"left": (int(w * (1 - p)), 0, w, h), "right": (0, 0, int(w * p), h),
                "up": (0, int(h * (1 - p)), w, h), "down": (0, 0, w, int(h * p))}[direction]
        return x, y, edge
    # slide: the new clip pushes in from the opposite side, the old one leaves with it
    q = (1 - p) if incoming_side else -p
    dx = {"left": int(w * q), "right": -int(w * q), "up": 0, "down": 0}[direction]
    dy = {"up": int(h * q), "down": -int(h * q), "left": 0, "right": 0}[direction]
    return x + (dx & ~1), y + (dy & ~1), None


@lru_cache(maxsize=16)
def _image(local: str) -> Any:
    with av.open(local) as container:
        frame = next(container.decode(video=0))
        # In the canvas's colours: a bare reformat to YUV wrote BT.601 into a BT.709 stream.
        return ColourScaler(frame.width - frame.width % 2, frame.height - frame.height % 2)(frame)


def _placed_image(frame: Any, layer: VisualLayer, size: tuple[int, int]) -> tuple[Any, Placement]:
    placement = place(layer, layer.crop_at(layer.start, Fraction(1)), (frame.width, frame.height), size)
    return _cached_image(frame, placement), placement


@lru_cache(maxsize=32)
def _cached_image(frame: Any, placement: Placement) -> Any:
    return Fitter()(frame, placement)


@lru_cache(maxsize=512)
def _overlay_picture(lines: Any, style: Any, storage: Any) -> Picture:
    if style.font is not None and not style.font.startswith("bundled:"):
        from dataclasses import replace

        style = replace(style, font=_local_font(storage, style.font))
    return rgba_to_picture(rasterize(lines, style))


@lru_cache(maxsize=32)
def _local_font(storage: Any, path: str) -> str:
    """A font file on this worker's disk (a copy, for remote storage), kept for the process."""
    import tempfile
    from pathlib import Path

    if storage.is_local:
        return str(storage.local_path(path))
    target = Path(tempfile.gettempdir()) / "ave-fonts" / path.replace("/", "_")
    target.parent.mkdir(parents=True, exist_ok=True)
    with storage.open(path) as src:
        target.write_bytes(src.read())
    return str(target)


def _encoder(out: Any, plan: RenderPlan, output: RenderOutput, params: EncodeParams) -> Any:
    spec = plan.spec
    stream = out.add_stream("libx264", rate=spec.fps)
    cc = stream.codec_context
    cc.width, cc.height, cc.pix_fmt = spec.width, spec.height, "yuv420p"
    tb = 1 / spec.fps
    cc.time_base = tb
    stream.time_base = tb
    tag_output(cc)  # BT.709 limited range: what the compositor and every clip's scale write
    stream.options = {"preset": output.preset, "crf": str(output.crf),
                      "g": str(max(1, round(output.gop_seconds * float(spec.fps)))),
                      "threads": str(codec_threads(params.threads))}
    return stream


def segment_inputs(plan: RenderPlan, segment: Segment, output: RenderOutput | None = None) -> dict[str, Any]:
    """What a segment's frames hang on, for its cache key: the canvas, the clips and text states on its frames
    (and the clip after each, whose transition plays over its end), their assets, its frames and the encoder's
    settings. A caption changed in another segment leaves this one's key as it was."""
    spec = plan.spec
    layers = [v for v in spec.visual if v.start < segment.end and v.end > segment.start]
    after = [v for v in spec.visual if any(v.track == u.track and v.clip == u.clip + 1 for u in layers)]
    return {"canvas": (spec.width, spec.height, spec.fps, spec.background), "layers": layers, "next": after,
            "assets": {u.asset_id: plan.assets[u.asset_id] for u in layers},
            "overlays": [o for o in plan.overlays if o.start < segment.end and o.end > segment.start],
            "frames": (segment.index, segment.start, segment.end), "output": output or RenderOutput()}


@operator("render.segment", weight=20, version=1, cache_key=segment_inputs)
def render_segment(plan: RenderPlan, segment: Segment, output: RenderOutput | None = None, *,
                   params: EncodeParams, ctx: OpContext) -> SegmentOutput:
    """Compose and encode output frames ``[segment.start, segment.end)``."""
    path = ctx.output_path(f"render/segments/{segment.index:05d}.mp4")
    progress = Progress(ctx)
    started, cpu = time.monotonic(), time.process_time()
    tb = 1 / plan.spec.fps
    with ExitStack() as stack:
        tmp = stack.enter_context(ctx.storage.writing(path))
        compositor = _Compositor(plan, segment, ctx, stack)
        with av.open(str(tmp), "w", format="mp4", options=mp4_options(tb)) as out:
            stream = _encoder(out, plan, output or RenderOutput(), params)
            count = segment.end - segment.start
            for n, k in enumerate(range(segment.start, segment.end)):
                frame = compositor.frame(k)
                frame.pts, frame.time_base, frame.pict_type = k, tb, PictureType.NONE
                out.mux(stream.encode(frame))
                progress((n + 1) / count)
            out.mux(stream.encode(None))
    elapsed = time.monotonic() - started
    ctx.log(f"Rendered segment {segment.index + 1}/{segment.count} ({segment.end - segment.start} frames) at "
            f"{(segment.end - segment.start) / max(elapsed, 1e-6):.0f} fps, {time.process_time() - cpu:.2f} CPU-s")
    progress.done()
    return SegmentOutput(index=segment.index, path=path, start=segment.start, frames=segment.end - segment.start)
