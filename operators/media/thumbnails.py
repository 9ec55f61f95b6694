"""Still images of a source: a poster frame and a sprite sheet of timeline thumbnails.

JPEGs are encoded with FFmpeg's mjpeg encoder through PyAV (no imaging library needed).
Unlike the proxy, these are turned upright in pixels, because a JPEG has no display matrix.
Pixels are read in the source's own colours and HDR is tone-mapped (:mod:`operators.media.colour`),
then written in JFIF's (BT.601, full range).
An audio-only source has no pictures to take: both operators return None for it, so an
ingest of a podcast or voice memo completes with ``poster``/``sprite`` null instead of failing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import (
    Damage,
    Progress,
    coded_size,
    decode_tolerant,
    encode_jpeg,
    even,
    fit_height,
    frame_to_rgb,
    open_input,
)
from operators.media.colour import ColourScaler
from operators.media.info import (
    Chunk,
    ChunkOutput,
    MediaInfo,
    SpriteLayout,
    Thumbnail,
    Thumbnails,
    VideoStreamInfo,
)
from operators.registry import operator
from operators.types import SourceRef, StoredFile

__all__ = [
    "PosterParams",
    "SheetParams",
    "SpriteParams",
    "TileGrabber",
    "TileParams",
    "poster",
    "sprite",
    "sprite_layout",
    "sprite_sheet",
]


def _seek_frame(container: Any, stream: Any, video: VideoStreamInfo, seconds: float, exact: bool) -> Any:
    """The frame shown at ``seconds`` (or, not ``exact``, the keyframe at or before it).

    Seeking can land where nothing decodes: an MPEG-TS with one keyframe is entered mid-GOP, and the
    decoder drops every frame until a keyframe that never comes. Then (or when the seek landed past
    the time) decoding starts again from the beginning and goes forward to the frame.
    """
    target = video.start_pts + int(seconds / video.tb)
    container.seek(max(target, video.start_pts), stream=stream, backward=True, any_frame=False)
    frame = _frame_at(container, stream, target, exact)
    if frame is not None and (frame.pts <= target or not exact):
        return frame
    stream.codec_context.flush_buffers()
    # Time 0, not the first frame's time: a TS seek to 1.4 s lands on the packet after it.
    container.seek(min(0, video.start_pts), stream=stream, backward=True, any_frame=False)
    again = _frame_at(container, stream, target, exact)
    return again if again is not None else frame


def _frame_at(container: Any, stream: Any, target: int, exact: bool) -> Any:
    """Decoding forward from where the container stands: the frame on screen at ``target``."""
    best = None
    # Past damaged packets, as the proxy's decode goes (a damaged stretch must not cost the poster).
    for frame in decode_tolerant(container, stream, Damage()):
        if frame.pts is None:
            continue
        if not exact or frame.pts == target:
            return frame
        if frame.pts > target:
            # The frame on screen at ``target`` is the last one that started before it.
            return best if best is not None else frame
        best = frame
    return best


class PosterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Where to take the poster from; None picks 10% in, past most fade-ins and black leaders.
    at_seconds: float | None = Field(None, ge=0)
    height: int = Field(720, ge=16, le=4320)
    quality: int = Field(3, ge=2, le=31)


@operator("media.poster", weight=1)
def poster(source: SourceRef, info: MediaInfo, *, params: PosterParams, ctx: OpContext) -> StoredFile | None:
    """A JPEG of one frame, upright, at most ``height`` tall (None for an audio-only source)."""
    video = info.video
    if video is None:
        ctx.log("No video stream: no poster")
        return None
    at = params.at_seconds if params.at_seconds is not None else video.duration * 0.1
    at = min(at, max(0.0, video.duration - video.frame_duration))
    width, height = fit_height(video.display_width, video.display_height, params.height)
    path = ctx.output_path("poster.jpg")
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        frame = _seek_frame(container, stream, video, at, exact=True)
        if frame is None:
            raise MediaError(f"No video frame could be decoded near {at:.2f}s")
        rgb = frame_to_rgb(frame, width, height, video.rotation)
    ctx.log(f"Poster at {at:.2f}s ({width}x{height})")
    return _jpeg_output(ctx, path, rgb, params.quality, "poster",
                        {"width": width, "height": height, "at_seconds": round(at, 3)})


class TileParams(BaseModel):
    """Which moments a sprite sheet shows, and how big each tile is."""

    model_config = ConfigDict(extra="forbid")
    interval_seconds: float = Field(2.0, gt=0)
    tile_width: int = Field(160, ge=16, le=1920)
    #: A sheet past this many tiles would be too big to load in one go; the interval grows instead.
    max_tiles: int = Field(400, ge=1, le=10000)


class SheetParams(BaseModel):
    """How the tiles are laid out in the JPEG."""

    model_config = ConfigDict(extra="forbid")
    columns: int = Field(10, ge=1, le=100)
    quality: int = Field(5, ge=2, le=31)


class SpriteParams(TileParams, SheetParams):
    #: False: each tile is the keyframe at or before its time (only keyframes are decoded, so
    #: a tile may be up to one GOP early). True: the exact frame, decoding from that keyframe.
    exact: bool = False


def sprite_layout(video: VideoStreamInfo, tiles: TileParams, columns: int = 10) -> SpriteLayout:
    interval = tiles.interval_seconds
    count = max(1, math.ceil(video.duration / interval - 1e-9))
    if count > tiles.max_tiles:
        count = tiles.max_tiles
        interval = video.duration / count
    tile_w = even(tiles.tile_width)
    tile_h = even(tile_w * video.display_height / video.display_width)
    return SpriteLayout(interval=interval, count=count, tile_width=tile_w, tile_height=tile_h, columns=count,
                        rows=1).with_columns(columns)


def _sheet(layout: SpriteLayout, tiles: dict[int, np.ndarray], exact: bool, quality: int, ctx: OpContext,
           how: str) -> StoredFile:
    tile_w, tile_h, columns = layout.tile_width, layout.tile_height, layout.columns
    sheet = np.zeros((layout.rows * tile_h, columns * tile_w, 3), dtype=np.uint8)
    for i, tile in tiles.items():
        r, c = divmod(i, columns)
        sheet[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
    ctx.log(f"Sprite sheet of {layout.count} thumbnails ({columns}x{layout.rows}, every {layout.interval:g}s, {how})")
    meta = {"interval": layout.interval, "tile_width": tile_w, "tile_height": tile_h, "columns": columns,
            "rows": layout.rows, "count": layout.count, "exact": exact}
    return _jpeg_output(ctx, ctx.output_path("sprite.jpg"), sheet, quality, "sprite", meta)


def _jpeg_output(ctx: OpContext, path: str, rgb: np.ndarray, quality: int, kind: str,
                 meta: dict[str, Any]) -> StoredFile:
    """Write ``rgb`` as a JPEG at ``path`` in storage and describe it as an output."""
    with ctx.storage.writing(path) as tmp:
        encode_jpeg(rgb, tmp, quality)
    return StoredFile(path=path, kind=kind, content_type="image/jpeg", size=ctx.storage.size(path), meta=meta)


@operator("media.sprite", weight=2)
def sprite(source: SourceRef, info: MediaInfo, *, params: SpriteParams, ctx: OpContext) -> StoredFile | None:
    """A JPEG sheet of thumbnails every ``interval_seconds``, row by row, for timeline scrubbing.

    Decodes the source itself (one keyframe per tile by default). The ingest graph uses
    :func:`sprite_sheet` instead, which takes the tiles from the frames the chunk transcodes
    decode anyway. None for an audio-only source.
    """
    video = info.video
    if video is None:
        ctx.log("No video stream: no sprite sheet")
        return None
    layout = sprite_layout(video, params, params.columns)
    count, interval = layout.count, layout.interval
    tiles: dict[int, np.ndarray] = {}
    progress = Progress(ctx)
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        if not params.exact:
            stream.codec_context.skip_frame = "NONKEY"
        last_pts, last_tile = None, None
        scaler = ColourScaler(*coded_size((layout.tile_width, layout.tile_height), video.rotation), "rgb24")
        for i in range(count):
            frame = _seek_frame(container, stream, video, i * interval, exact=params.exact)
            if frame is None:
                if last_tile is None:
                    raise MediaError(f"No video frame could be decoded near {i * interval:.2f}s")
                tile = last_tile
            elif frame.pts == last_pts and last_tile is not None:
                tile = last_tile
            else:
                tile = frame_to_rgb(frame, layout.tile_width, layout.tile_height, video.rotation, scaler)
                last_pts, last_tile = frame.pts, tile
            tiles[i] = tile
            progress((i + 1) / count)
    out = _sheet(layout, tiles, params.exact, params.quality, ctx, "from the source's " + ("frames" if params.exact else "keyframes"))
    progress.done()
    return out


class TileGrabber:
    """Picks a chunk's sprite tiles out of the frames its transcode decodes, in pts order.

    Tile ``i`` shows the frame on screen at ``target_pts(i)``: the last frame with
    ``pts <= target``, the same frame ``sprite(exact=True)`` seeks to. That is only known once
    the next frame (or the chunk's end) shows up, so the previous frame is kept until then.
    A tile belongs to the chunk whose pts range holds its target; chunks tile the stream, so
    every tile is taken exactly once across a job.
    """

    def __init__(self, video: VideoStreamInfo, chunk: Chunk, tiles: TileParams) -> None:
        self.video, self.chunk = video, chunk
        self.layout = sprite_layout(video, tiles)
        self._targets = [
            (i, t) for i in range(self.layout.count)
            if chunk.start_pts <= (t := self.layout.target_pts(video, i)) < chunk.end_pts
        ]
        self._next = 0
        self._held: Any = None
        # One colour-managed scaler (one filter graph) for all of the chunk's tiles.
        self._scaler = ColourScaler(*coded_size((self.layout.tile_width, self.layout.tile_height), video.rotation),
                                    "rgb24")
        self.tiles: list[Thumbnail] = []

    def __call__(self, frame: Any) -> None:
        """Offer the next frame of the chunk (frames before ``chunk.start_pts`` are not offered)."""
        self._serve(frame.pts)
        self._held = frame if self._next < len(self._targets) else None

    def _serve(self, before: int | None) -> None:
        # Every target the held frame covers: at or after its pts, before the next frame's.
        while self._next < len(self._targets) and (before is None or self._targets[self._next][1] < before):
            index, target = self._targets[self._next]
            if self._held is None:
                raise MediaError(f"No video frame of chunk {self.chunk.index + 1} is on screen at sprite tile "
                                 f"{index + 1} (pts {target})")
            rgb = frame_to_rgb(self._held, self.layout.tile_width, self.layout.tile_height, self.video.rotation,
                               self._scaler)
            self.tiles.append(Thumbnail(index=index, pts=self._held.pts, rgb=rgb.tobytes()))
            self._next += 1

    def finish(self) -> Thumbnails:
        """The chunk's tiles, once its last frame has been offered."""
        self._serve(None)
        self._held = None
        return Thumbnails(layout=self.layout, tiles=self.tiles)


@operator("media.sprite_sheet", weight=1)
def sprite_sheet(
    parts: list[ChunkOutput], info: MediaInfo, *, params: SheetParams, ctx: OpContext
) -> StoredFile | None:
    """The sprite sheet from the tiles the chunk transcodes took (``TranscodeParams.sprite``).

    The video is then decoded once in the whole ingest, by the chunks; the tiles are the
    exact frames at their times. None for an audio-only source (no chunks).
    """
    video = info.video
    if video is None:
        ctx.log("No video stream: no sprite sheet")
        return None
    got = [p.thumbnails for p in parts if p.thumbnails is not None]
    if not got or len(got) < len(parts):
        raise MediaError("The chunks hold no sprite tiles: transcode them with the sprite parameter set")
    if any(t.layout != got[0].layout for t in got):
        raise MediaError("The chunks' sprite tiles were made with different sprite settings")
    layout = got[0].layout.with_columns(params.columns)
    shape = (layout.tile_height, layout.tile_width, 3)
    tiles: dict[int, np.ndarray] = {}
    for tile in (tile for t in got for tile in t.tiles):
        if tile.index in tiles or not 0 <= tile.index < layout.count:
            raise MediaError(f"Sprite tile {tile.index + 1} of {layout.count} is duplicated or out of range")
        if len(tile.rgb) != shape[0] * shape[1] * 3:
            raise MediaError(f"Sprite tile {tile.index + 1} holds {len(tile.rgb)} bytes, not {shape[1]}x{shape[0]} RGB")
        tiles[tile.index] = np.frombuffer(tile.rgb, dtype=np.uint8).reshape(shape)
    missing = [i + 1 for i in range(layout.count) if i not in tiles]
    if missing:
        raise MediaError(f"The chunks left sprite tiles {missing[:10]} of {layout.count} out")
    out = _sheet(layout, tiles, True, params.quality, ctx, "from the chunks' frames")
    ctx.progress(1.0)
    return out
