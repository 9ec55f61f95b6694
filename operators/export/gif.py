"""``export.gif``: an animated GIF with a palette made for it, under its size cap.

Two passes through libavfilter, as ``ffmpeg``'s palettegen/paletteuse recipe does, but the
source is decoded once: pass 1 picks the frames at the GIF's rate (12–15 fps: the source's
rate divided by a whole number), scales them and feeds ``palettegen`` while keeping the small
frames in a temporary file; pass 2 maps those frames onto the palette with ``paletteuse``
(error-diffusion dithering) and encodes. A GIF over ``max_bytes`` is made again from the kept
frames with fewer colours, then smaller, and the job fails only if none fits.

Frames are converted to BT.709 limited range as they are scaled (HDR tone-mapped), and both
graphs' sources say so: the RGB that palettegen and paletteuse see is then the source's colours
(a source left "unspecified" was read as BT.601).

Frame ``k`` shows the last source frame at or before ``start + k / fps``; delays are written in
hundredths of a second from exact times, so the GIF lasts as long as its part of the source.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter
import numpy as np

from operators.context import OpContext
from operators.errors import MediaError
from operators.export.encode import FrameFilter, upright_filter
from operators.export.loudness import drain
from operators.export.plan import GifJob
from operators.media._av import Progress, codec_threads, even, open_input
from operators.media.colour import ColourScaler, add_source
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.types import SourceRef, StoredFile

__all__ = ["gif", "gif_attempts"]

_GIF_TB = Fraction(1, 100)


def gif_attempts(colors: int) -> list[tuple[float, int]]:
    """(scale, colours) to try in turn until the GIF fits its cap."""
    return [(1.0, colors), (1.0, min(colors, 128)), (0.8, min(colors, 128)), (0.66, min(colors, 96)),
            (0.5, min(colors, 64))]


def _selected(container: Any, stream: Any, job: GifJob, info: MediaInfo) -> Iterator[Any]:
    """The source frames the GIF shows, one per GIF frame (repeated when the source is slower)."""
    video = info.video
    assert video is not None
    tb = video.tb
    rate = Fraction(job.fps)
    start = Fraction(repr(job.start))
    origin = video.start_pts
    container.seek(origin + int(start / tb), stream=stream, backward=True, any_frame=False)
    k, held = 0, None
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = (frame.pts - origin) * tb
        while held is not None and k < job.frames and start + Fraction(k) / rate < t:
            yield held
            k += 1
        if k >= job.frames:
            return
        held = frame
    while held is not None and k < job.frames:
        yield held
        k += 1


def _palette(frames: Iterator[Any], width: int, height: int, colors: int) -> Any:
    graph = av.filter.Graph()
    src = add_source(graph, width, height, "yuv420p", _GIF_TB)  # BT.709 limited: what the scale wrote
    gen = graph.add("palettegen", f"max_colors={colors}:stats_mode=full")
    sink = graph.add("buffersink")
    src.link_to(gen)
    gen.link_to(sink)
    graph.configure()
    for frame in frames:
        src.push(frame)
    src.push(None)
    palette = next(drain(graph, sink), None)
    if palette is None:
        raise MediaError("GIF: the palette could not be made (no frames)")
    return palette


def _write(path: Path, frames: list[Any] | Iterator[Any], palette: Any, width: int, height: int, job: GifJob) -> int:
    preset = job.preset
    graph = av.filter.Graph()
    src = add_source(graph, width, height, "yuv420p", _GIF_TB)
    pal = graph.add_buffer(width=palette.width, height=palette.height, format=palette.format.name, time_base=_GIF_TB)
    dither = preset.dither if preset.dither != "bayer" else "bayer:bayer_scale=3"
    use = graph.add("paletteuse", f"dither={dither}:diff_mode=rectangle")
    sink = graph.add("buffersink")
    src.link_to(use, 0, 0)
    pal.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    pal.push(palette)
    pal.push(None)
    rate = Fraction(job.fps)
    written = 0
    with av.open(str(path), "w", format="gif") as out:
        stream = out.add_stream("gif", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        stream.codec_context.time_base = _GIF_TB

        def emit() -> None:
            nonlocal written
            for frame in drain(graph, sink):
                frame.pts, frame.time_base = round(Fraction(written) / rate * 100), _GIF_TB
                written += 1
                out.mux(stream.encode(frame))

        for frame in frames:
            frame.pts, frame.time_base = written, _GIF_TB
            src.push(frame)
            emit()
        src.push(None)
        emit()
        out.mux(stream.encode(None))
    return written


class _Kept:
    """The scaled frames of pass 1 in a temporary file (yuv420p), read back for pass 2."""

    def __init__(self, folder: Path, width: int, height: int) -> None:
        self.path, self.width, self.height = folder / "frames.yuv", width, height
        self.size = width * height * 3 // 2
        self._out = open(self.path, "wb")  # noqa: SIM115
        self.count = 0

    def add(self, frame: Any) -> Any:
        self._out.write(frame.to_ndarray().tobytes())
        self.count += 1
        return frame

    def frames(self, scale: ColourScaler | None = None) -> Iterator[Any]:
        self._out.close()
        with open(self.path, "rb") as f:
            while data := f.read(self.size):
                arr = np.frombuffer(data, dtype=np.uint8).reshape(self.height * 3 // 2, self.width)
                frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
                frame.colorspace, frame.color_range = 1, 1  # as kept: BT.709, limited range
                yield scale(frame) if scale is not None else frame


@operator("export.gif", weight=8)
def gif(source: SourceRef, info: MediaInfo, job: GifJob, *, ctx: OpContext) -> StoredFile:
    """Decode once, palettegen, paletteuse with dithering, under the size cap; verified."""
    video = info.video
    if video is None:
        raise MediaError("The source has no video stream to make a GIF of")
    preset = job.preset
    progress = Progress(ctx)
    path = ctx.output_path(f"export/{preset.name}.gif")
    cap = preset.max_bytes
    turn = upright_filter(video.rotation)
    with tempfile.TemporaryDirectory(prefix="ave-gif-") as tmp:
        kept = _Kept(Path(tmp), job.width, job.height)
        # Scaled and converted to BT.709 limited range (HDR tone-mapped) in one pass.
        scale = ColourScaler(job.width, job.height, "yuv420p")
        rotate = FrameFilter(turn) if turn else None
        with ctx.storage.reading(source.path) as local, open_input(local) as container:
            stream = container.streams[video.index]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = codec_threads(None)

            def scaled() -> Iterator[Any]:
                last_src, last_out = None, None
                for frame in _selected(container, stream, job, info):
                    if frame is not last_src:
                        upright = rotate(frame)[0] if rotate is not None else frame
                        last_src, last_out = frame, scale(upright)
                    progress(0.6 * kept.count / job.frames)
                    yield kept.add(last_out)

            palette = _palette(scaled(), job.width, job.height, preset.colors)
        if kept.count != job.frames:
            raise MediaError(f"GIF: the source gave {kept.count} frames for {job.duration:.2f}s, not {job.frames}")
        with ctx.storage.writing(path) as out:
            for attempt, (factor, colors) in enumerate(gif_attempts(preset.colors)):
                w, h = (job.width, job.height) if factor == 1.0 else (even(job.width * factor), even(job.height * factor))
                resize = ColourScaler(w, h, "yuv420p") if (w, h) != (job.width, job.height) else None
                if attempt and (colors != preset.colors or resize is not None):
                    palette = _palette(kept.frames(resize), w, h, colors)
                written = _write(out, kept.frames(resize), palette, w, h, job)
                size = out.stat().st_size
                if cap is None or size <= cap:
                    break
                ctx.log(f"{preset.name}: {size / 1e6:.1f} MB at {w}x{h}, {colors} colours is over its "
                        f"{cap / 1e6:.1f} MB cap: trying smaller")
            else:
                raise MediaError(f"{preset.name}: even at {w}x{h} with {colors} colours the GIF is {size / 1e6:.1f} MB, "
                                 f"over its {cap / 1e6:.1f} MB cap: shorten it (duration) or raise max_bytes")
            facts = _verify(preset.name, out, job, written, cap)
    rate = Fraction(job.fps)
    ctx.log(f"{preset.name}: {job.frames} frames at {float(rate):.3f} fps, {w}x{h}, {colors} colours, "
            f"{size / 1e6:.2f} MB — verified")
    progress.done()
    meta = {"preset": preset.name, "width": w, "height": h, "fps": job.fps, "frame_count": job.frames,
            "duration": job.frames / float(rate), "colors": colors, "start": job.start, **facts}
    if cap is not None:
        meta["max_bytes"] = cap
    return StoredFile(path=path, kind="export", content_type="image/gif", size=ctx.storage.size(path), meta=meta)


def _verify(name: str, local: Path, job: GifJob, written: int, cap: int | None) -> dict[str, object]:
    rate = Fraction(job.fps)
    if written != job.frames:
        raise MediaError(f"{name} has {written} frames, not {job.frames}")
    with open_input(local, f"{name} could not be read back") as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        seconds = float(sum(p.duration or 0 for p in packets) * stream.time_base)
    with open_input(local, f"{name} does not decode") as c:
        decoded = sum(1 for _ in c.decode(video=0))
    if len(packets) != job.frames or decoded != job.frames:
        raise MediaError(f"{name} holds {len(packets)} frames ({decoded} decode), not {job.frames}")
    # Its part of the source, within one GIF frame (delays are hundredths of a second: 0.01 s more).
    if abs(seconds - job.duration) > 1 / float(rate) + 0.01:
        raise MediaError(f"{name} lasts {seconds:.2f}s, its part of the source {job.duration:.2f}s")
    size = local.stat().st_size
    if cap is not None and size > cap:
        raise MediaError(f"{name} is {size} bytes, over its {cap} cap")
    return {"decoded_frames": decoded, "gif_seconds": round(seconds, 2)}
