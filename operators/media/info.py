"""The values media operators pass to each other: what a source holds, its chunks, encoded chunks.

Timestamps stay integers in the source stream's own time base (kept as a ``"num/den"``
string so the models stay JSON-ready); seconds are given alongside for people and UIs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import Field

from operators.types import Frozen

__all__ = [
    "AssetMedia",
    "AudioStreamInfo",
    "Chunk",
    "ChunkOutput",
    "MediaInfo",
    "RenditionFile",
    "SpriteLayout",
    "StreamInfo",
    "Thumbnail",
    "Thumbnails",
    "VideoStreamInfo",
]


class VideoStreamInfo(Frozen):
    type: Literal["video"] = "video"
    index: int
    codec: str
    width: int
    height: int
    #: Size as shown: after the display matrix's rotation and the pixel aspect ratio.
    display_width: int
    display_height: int
    #: Counter-clockwise degrees (0, 90, 180, 270) a player turns the coded picture.
    rotation: int = 0
    fps: float
    #: The nominal rate as an exact fraction, e.g. ``"30000/1001"``.
    fps_fraction: str
    avg_frame_rate: str | None = None
    real_frame_rate: str | None = None
    #: True when frame durations differ (measured from the packets' timestamps).
    is_vfr: bool = False
    #: Exact: one per video packet, counted by demuxing.
    frame_count: int
    #: The decoder flags the pictures as interlaced (two fields): outputs are deinterlaced (``bwdif``).
    interlaced: bool = False
    pix_fmt: str | None = None
    has_b_frames: bool = False
    time_base: str
    #: The first frame's pts in ``time_base``.
    start_pts: int = 0
    #: First frame to end of the last frame, in seconds.
    duration: float
    bit_rate: int | None = None

    @property
    def tb(self) -> Fraction:
        return Fraction(self.time_base)

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps_fraction)

    @property
    def frame_duration(self) -> float:
        return 1.0 / self.fps if self.fps > 0 else 0.0


class AudioStreamInfo(Frozen):
    type: Literal["audio"] = "audio"
    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    time_base: str
    start_pts: int = 0
    duration: float
    bit_rate: int | None = None
    #: Codec profile as FFmpeg names it ("LC", "HE-AAC", ...), when it has one.
    profile: str | None = None

    @property
    def tb(self) -> Fraction:
        return Fraction(self.time_base)

    @property
    def start_seconds(self) -> float:
        return float(self.start_pts * self.tb)


StreamInfo = Annotated[VideoStreamInfo | AudioStreamInfo, Field(discriminator="type")]


class MediaInfo(Frozen):
    """What :func:`operators.media.probe.probe` found in a source."""

    path: str
    format: str
    duration: float
    size: int
    bit_rate: int | None = None
    streams: list[StreamInfo]

    @property
    def video(self) -> VideoStreamInfo | None:
        return next((s for s in self.streams if isinstance(s, VideoStreamInfo)), None)

    @property
    def audio(self) -> AudioStreamInfo | None:
        return next((s for s in self.streams if isinstance(s, AudioStreamInfo)), None)


class Chunk(Frozen):
    """A range of the video stream that one task transcodes on its own.

    The chunk owns the frames with ``start_pts <= pts < end_pts``; decoding starts at the
    keyframe ``seek_pts`` (reached by seeking to ``seek_ts``, which is what the demuxer
    indexes) and frames before ``start_pts`` are dropped, so a chunk may start mid-GOP.
    """

    index: int
    count: int
    start_pts: int
    end_pts: int
    seek_pts: int
    seek_ts: int
    frame_count: int
    start: float
    end: float
    time_base: str
    keyframe_aligned: bool = True


class RenditionFile(Frozen):
    #: The asked-for height that names the rendition (``chunks/720p/...``); ``height`` is
    #: what it got, lower when the source is smaller.
    rendition: int
    height: int
    width: int
    path: str
    size: int


class Thumbnail(Frozen):
    """One sprite tile taken from a frame a chunk decoded anyway: upright RGB pixels."""

    #: Its slot in the sheet (tile ``index`` shows time ``index * interval``).
    index: int
    #: The source frame it shows (the one on screen at the tile's time).
    pts: int
    #: ``tile_height * tile_width * 3`` bytes, row by row.
    rgb: bytes


class SpriteLayout(Frozen):
    """Tile times and sizes, and the sheet's grid: the same for every chunk of a job."""

    interval: float
    count: int
    tile_width: int
    tile_height: int
    columns: int
    rows: int

    def target_pts(self, video: VideoStreamInfo, index: int) -> int:
        """The time tile ``index`` shows, in the video's time base."""
        return video.start_pts + int(index * self.interval / video.tb)

    def with_columns(self, columns: int) -> SpriteLayout:
        """The same tiles laid out ``columns`` wide (fewer when there are fewer tiles)."""
        columns = min(columns, self.count)
        return self.model_copy(update={"columns": columns, "rows": math.ceil(self.count / columns)})


class Thumbnails(Frozen):
    """A chunk's share of the sprite sheet, and the layout every chunk of the job agrees on."""

    layout: SpriteLayout
    tiles: list[Thumbnail]


class ChunkOutput(Frozen):
    """One transcoded chunk: a file per rendition, the frames it holds, and sprite tiles if asked."""

    chunk: Chunk
    renditions: list[RenditionFile]
    frame_count: int
    first_pts: int
    last_pts: int
    #: First frame's start to last frame's end, in seconds.
    duration: float
    time_base: str
    thumbnails: Thumbnails | None = None
    #: Source frames whose packets did not decode (damaged data): the frame before them was shown instead.
    damaged: int = 0


class AssetMedia(Frozen):
    """An asset a job uses, resolved by the scheduler: where it is, what it is, what it holds.

    ``info`` is the probe of audio, video and image assets (None for fonts and transcripts).
    """

    id: str
    path: str
    kind: str
    content_type: str
    project_id: str | None = None
    info: MediaInfo | None = None
    #: The assets this one was made from, nearest first (a transcript: its audio, then the video).
    derived_from: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        """A still picture: an image type, or a "video" of one frame in an image format."""
        if self.content_type.startswith("image/"):
            return True
        video = self.info.video if self.info else None
        return video is not None and video.frame_count <= 1 and (self.info.format or "").endswith(("_pipe", "image2"))
