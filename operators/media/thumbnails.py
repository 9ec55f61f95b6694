"""Still images of a source: a poster frame and a sprite sheet of timeline thumbnails.

JPEGs are encoded with FFmpeg's mjpeg encoder through PyAV (no imaging library needed).
Unlike the proxy, these are turned upright in pixels, because a JPEG has no display matrix.
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
from operators.media._av import Progress, encode_jpeg, even, fit_height, frame_to_rgb, open_input
from operators.media.info import MediaInfo, VideoStreamInfo
from operators.registry import operator
from operators.types import SourceRef, StoredFile

__all__ = ["PosterParams", "SpriteParams", "poster", "sprite"]


def _seek_frame(container: Any, stream: Any, video: VideoStreamInfo, seconds: float, exact: bool) -> Any:
    """The frame shown at ``seconds`` (or, not ``exact``, the keyframe at or before it)."""
    target = video.start_pts + int(seconds / video.tb)
    container.seek(max(target, video.start_pts), stream=stream, backward=True, any_frame=False)
    best = None
    for frame in container.decode(stream):
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
    with ctx.storage.writing(path) as tmp:
        encode_jpeg(rgb, tmp, params.quality)
    ctx.log(f"Poster at {at:.2f}s ({width}x{height})")
    return StoredFile(
        path=path,
        kind="poster",
        content_type="image/jpeg",
        size=ctx.storage.size(path),
        meta={"width": width, "height": height, "at_seconds": round(at, 3)},
    )


class SpriteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval_seconds: float = Field(2.0, gt=0)
    tile_width: int = Field(160, ge=16, le=1920)
    columns: int = Field(10, ge=1, le=100)
    #: A sheet past this many tiles would be too big to load in one go; the interval grows instead.
    max_tiles: int = Field(400, ge=1, le=10000)
    #: False: each tile is the keyframe at or before its time (only keyframes are decoded, so
    #: a tile may be up to one GOP early). True: the exact frame, decoding from that keyframe.
    exact: bool = False
    quality: int = Field(5, ge=2, le=31)


@operator("media.sprite", weight=2)
def sprite(source: SourceRef, info: MediaInfo, *, params: SpriteParams, ctx: OpContext) -> StoredFile | None:
    """A JPEG sheet of thumbnails every ``interval_seconds``, row by row, for timeline scrubbing.

    None for an audio-only source.
    """
    video = info.video
    if video is None:
        ctx.log("No video stream: no sprite sheet")
        return None
    interval = params.interval_seconds
    count = max(1, math.ceil(video.duration / interval - 1e-9))
    if count > params.max_tiles:
        count = params.max_tiles
        interval = video.duration / count
    tile_w = even(params.tile_width)
    tile_h = even(tile_w * video.display_height / video.display_width)
    columns = min(params.columns, count)
    rows = math.ceil(count / columns)
    sheet = np.zeros((rows * tile_h, columns * tile_w, 3), dtype=np.uint8)
    progress = Progress(ctx)
    with ctx.storage.reading(source.path) as local, open_input(local) as container:
        stream = container.streams[video.index]
        stream.thread_type = "AUTO"
        if not params.exact:
            stream.codec_context.skip_frame = "NONKEY"
        last_pts, last_tile = None, None
        for i in range(count):
            frame = _seek_frame(container, stream, video, i * interval, exact=params.exact)
            if frame is None:
                if last_tile is None:
                    raise MediaError(f"No video frame could be decoded near {i * interval:.2f}s")
                tile = last_tile
            elif frame.pts == last_pts and last_tile is not None:
                tile = last_tile
            else:
                tile = frame_to_rgb(frame, tile_w, tile_h, video.rotation)
                last_pts, last_tile = frame.pts, tile
            r, c = divmod(i, columns)
            sheet[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
            progress((i + 1) / count)
    path = ctx.output_path("sprite.jpg")
    with ctx.storage.writing(path) as tmp:
        encode_jpeg(sheet, tmp, params.quality)
    ctx.log(f"Sprite sheet of {count} thumbnails ({columns}x{rows}, every {interval:g}s)")
    progress.done()
    return StoredFile(
        path=path,
        kind="sprite",
        content_type="image/jpeg",
        size=ctx.storage.size(path),
        meta={
            "interval": interval,
            "tile_width": tile_w,
            "tile_height": tile_h,
            "columns": columns,
            "rows": rows,
            "count": count,
            "exact": params.exact,
        },
    )

