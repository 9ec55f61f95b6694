"""Delivery presets: the built-in ones, custom ones, and the ``presets`` payload model.

A preset says what one delivered file (or HLS package) is: container, codecs, the box the
picture fits in, the frame-rate cap, rate control and, for GIFs, the size cap. The payload
names built-in presets (``"mp4-1080p"``) or gives objects with the same fields; an object
whose ``name`` is a built-in one (or that gives ``base``) starts from that preset::

    "presets": ["mp4-1080p", "hls", {"name": "gif", "duration": 8},
                {"name": "square", "base": "mp4-720p", "width": 720, "height": 720, "fit": "cover"}]

Impossible values are a 422 at POST naming the field (``["body", "presets", 3, "width"]``):
odd sizes, fps <= 0, a GIF longer than 60 s, a codec the container cannot hold.

Sizes are boxes, not exact sizes, unless ``fit`` is ``pad`` or ``cover``: a ``contain`` preset
fits the picture inside the box (turned to the source's orientation, so "1080p" means a short
side of 1080 for portrait video too) and never upscales unless ``upscale`` is set.

Every output is BT.709 SDR (HDR sources are tone-mapped) unless the preset sets ``hdr``
(``hevc-1080p-hdr``): then it is 10-bit HEVC, and an HLG or PQ source keeps its HDR signal and
tags; an SDR source stays BT.709.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    field_validator,
    model_validator,
)

from operators.errors import did_you_mean
from operators.registry import payload_model
from operators.render.timeline import FPS

__all__ = ["BUILTIN", "GIF_MAX_SECONDS", "ExportPreset", "ExportPresets", "ladder_bitrate", "output_key"]

GIF_MAX_SECONDS = 60.0
_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"
Format = Literal["mp4", "webm", "gif", "hls", "mp3", "wav"]
VideoCodec = Literal["h264", "hevc", "vp9", "av1"]
AudioCodec = Literal["aac", "opus", "mp3", "pcm_s16le"]
#: What each container can hold (video codecs, audio codecs).
_HOLDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mp4": (("h264", "hevc", "av1"), ("aac",)),
    "webm": (("vp9", "av1"), ("opus",)),
    "hls": (("h264",), ("aac",)),
    "gif": ((), ()),
    "mp3": ((), ("mp3",)),
    "wav": ((), ("pcm_s16le",)),
}
#: Peak bitrate (bits/s) of a ladder rung by its short side, after Apple's HLS authoring table.
_LADDER_BITRATES = {2160: 20_000_000, 1440: 12_000_000, 1080: 8_000_000, 720: 4_500_000, 540: 3_000_000,
                    480: 2_000_000, 360: 1_000_000, 240: 600_000, 144: 300_000}


def ladder_bitrate(short_side: int) -> int:
    """The peak bitrate of a rung: the table's, scaled by area between its rows."""
    if short_side in _LADDER_BITRATES:
        return _LADDER_BITRATES[short_side]
    above = min((h for h in _LADDER_BITRATES if h >= short_side), default=2160)
    return max(200_000, round(_LADDER_BITRATES[above] * (short_side / above) ** 2))


def _even(value: int | None, info: Any) -> int | None:
    if value is not None and value % 2:
        raise ValueError(f"{info.field_name} must be even (4:2:0 video needs even sizes), not {value}")
    return value


class ExportPreset(BaseModel):
    """One delivery: a file, or an HLS package. Built-in presets are instances of this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="The output's name: result_payload.outputs.<name>")
    base: str | None = Field(None, description="A built-in preset this one starts from")
    format: Format | None = None
    video_codec: VideoCodec | None = None
    audio_codec: AudioCodec | None = None
    #: Keep an HDR source's HDR (10-bit, its primaries and transfer) instead of tone-mapping it to SDR.
    hdr: bool = Field(False, description="10-bit HEVC keeping an HLG/PQ source's HDR (SDR sources stay BT.709)")
    width: int | None = Field(None, ge=16, le=4096, description="Box width (even)")
    height: int | None = Field(None, ge=16, le=4096, description="Box height (even)")
    #: contain: inside the box, aspect kept; pad: inside, then black bars to the exact box; cover: fill, crop.
    fit: Literal["contain", "pad", "cover"] = "contain"
    upscale: bool = False
    fps: FPS | None = Field(None, description="An exact output rate; omitted: the source's, capped at max_fps")
    max_fps: float = Field(60.0, gt=0, le=240)
    crf: int | None = Field(None, ge=0, le=63)
    max_bitrate: int | None = Field(None, ge=50_000, le=200_000_000, description="Peak video bitrate, bits/s")
    #: The encoder's speed setting: x264/x265 preset names, the VP9 cpu-used or the SVT-AV1 preset number.
    encoder_preset: str | None = Field(None, max_length=20)
    gop_seconds: float = Field(2.0, gt=0, le=20, description="Keyframe interval")
    audio_bitrate: int | None = Field(None, ge=16_000, le=512_000)
    sample_rate: Literal[44100, 48000] = 48000
    channels: Literal[1, 2] = 2
    # HLS
    ladder: list[int] | None = Field(None, min_length=1, max_length=6, description="Rung heights (short side)")
    segment_seconds: float = Field(6.0, ge=2, le=10)
    # GIF
    colors: int = Field(256, ge=2, le=256)
    dither: Literal["sierra2_4a", "floyd_steinberg", "bayer", "none"] = "sierra2_4a"
    max_bytes: int | None = Field(None, ge=10_000, le=500_000_000, description="Size cap of a GIF")
    start: float = Field(0.0, ge=0, description="GIF: where it starts in the source, seconds")
    duration: float | None = Field(None, gt=0, description=f"GIF: how long, at most {GIF_MAX_SECONDS:g} s")

    @model_validator(mode="before")
    @classmethod
    def _from_base(cls, data: Any) -> Any:
        """An object named like a built-in preset, or with ``base``, starts from that preset."""
        if not isinstance(data, dict):
            return data
        base = BUILTIN.get(data.get("base") or data.get("name") or "")
        if base is None:
            return data
        start = base.model_dump(exclude_unset=True, exclude={"name", "base"})
        return {**start, **data}

    @field_validator("base")
    @classmethod
    def _known_base(cls, value: str | None) -> str | None:
        if value is not None and value not in BUILTIN:
            raise ValueError(f"unknown preset '{value}'.{did_you_mean(value, BUILTIN)} Built in: {', '.join(BUILTIN)}")
        return value

    _width = field_validator("width", "height")(_even)

    @field_validator("ladder")
    @classmethod
    def _rungs(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        for rung in value:
            if rung % 2 or not 96 <= rung <= 2160:
                raise ValueError(f"each rung is an even height from 96 to 2160, not {rung}")
        return sorted(set(value), reverse=True)

    @field_validator("duration")
    @classmethod
    def _gif_length(cls, value: float | None, info: Any) -> float | None:
        if value is not None and info.data.get("format") == "gif" and value > GIF_MAX_SECONDS:
            raise ValueError(f"a GIF lasts at most {GIF_MAX_SECONDS:g} s, not {value:g} s: use a video preset "
                             "for longer exports")
        return value

    @field_validator("max_fps")
    @classmethod
    def _gif_rate(cls, value: float, info: Any) -> float:
        if info.data.get("format") == "gif" and value > 50:
            raise ValueError("a GIF plays at most 50 fps (its frame delays are hundredths of a second)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExportPreset:
        if self.format is None:
            raise ValueError(f"preset '{self.name}' is not built in: give its format "
                             f"({', '.join(_HOLDS)}) or a base preset")
        videos, audios = _HOLDS[self.format]
        if self.video_codec is not None and self.video_codec not in videos:
            raise ValueError(f"video_codec: {self.format} cannot hold {self.video_codec}"
                             + (f" (it holds {', '.join(videos)})" if videos else " (it has no video)"))
        if self.audio_codec is not None and self.audio_codec not in audios:
            raise ValueError(f"audio_codec: {self.format} cannot hold {self.audio_codec}"
                             + (f" (it holds {', '.join(audios)})" if audios else " (it has no audio)"))
        if self.hdr and self.video_codec != "hevc":
            # Only the x265 encoder is set up for 10-bit output with HDR signalling.
            raise ValueError(f"hdr: only HEVC presets keep HDR, not {self.video_codec or self.format}")
        if videos and self.video_codec is None:
            raise ValueError(f"video_codec: a {self.format} preset needs one of {', '.join(videos)}")
        if self.format in ("mp3", "wav") and self.audio_codec is None:
            raise ValueError(f"audio_codec: a {self.format} preset needs {audios[0]}")
        if self.format == "hls" and not self.ladder:
            raise ValueError("ladder: an HLS preset needs its rung heights, e.g. [1080, 720, 480, 360]")
        if self.format == "gif" and self.width is None and self.height is None:
            raise ValueError("width: a GIF preset needs a width or a height")
        if self.fit != "contain" and (self.width is None or self.height is None):
            raise ValueError(f"fit: '{self.fit}' needs both width and height (the exact box)")
        if self.format != "gif" and (self.start or self.duration is not None):
            raise ValueError("duration: only GIF presets take start and duration (a video export is the whole source)")
        if self.format == "hls" and self.segment_seconds < self.gop_seconds:
            raise ValueError("segment_seconds: a segment holds at least one keyframe interval (gop_seconds)")
        return self

    # -- what the preset is -------------------------------------------------------------
    @property
    def kind(self) -> Literal["video", "gif", "hls", "audio"]:
        return {"gif": "gif", "hls": "hls", "mp3": "audio", "wav": "audio"}.get(self.format or "", "video")  # type: ignore[return-value]

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN


def output_key(name: str) -> str:
    """A built-in preset's field in the collected outputs (``mp4-1080p`` -> ``mp4_1080p``)."""
    return name.replace("-", "_")


def _builtins() -> dict[str, ExportPreset]:
    h264 = {"format": "mp4", "video_codec": "h264", "audio_codec": "aac", "crf": 21, "encoder_preset": "veryfast"}
    social = {**h264, "width": 1080, "height": 1920, "fit": "pad", "upscale": True}
    hevc = {"format": "mp4", "video_codec": "hevc", "audio_codec": "aac", "crf": 26, "encoder_preset": "faster",
            "width": 1920, "height": 1080, "max_bitrate": 6_000_000, "audio_bitrate": 192_000}
    made = [
        {"name": "mp4-1080p", **h264, "width": 1920, "height": 1080, "max_bitrate": 8_000_000, "audio_bitrate": 192_000},
        {"name": "mp4-720p", **h264, "width": 1280, "height": 720, "max_bitrate": 4_500_000, "audio_bitrate": 192_000},
        {"name": "hevc-1080p", **hevc},
        {"name": "hevc-1080p-hdr", **hevc, "hdr": True},
        {"name": "webm-1080p", "format": "webm", "video_codec": "vp9", "audio_codec": "opus", "crf": 32,
         "encoder_preset": "5", "width": 1920, "height": 1080, "max_bitrate": 6_000_000, "audio_bitrate": 128_000},
        {"name": "av1-1080p", "format": "webm", "video_codec": "av1", "audio_codec": "opus", "crf": 35,
         "encoder_preset": "8", "width": 1920, "height": 1080, "max_bitrate": 5_000_000, "audio_bitrate": 128_000},
        {"name": "gif", "format": "gif", "width": 480, "max_fps": 15, "max_bytes": 15_000_000},
        {"name": "hls", "format": "hls", "video_codec": "h264", "audio_codec": "aac", "crf": 21,
         "encoder_preset": "veryfast", "ladder": [1080, 720, 480, 360], "segment_seconds": 6, "audio_bitrate": 192_000},
        {"name": "audio-mp3", "format": "mp3", "audio_codec": "mp3", "audio_bitrate": 192_000},
        {"name": "audio-wav", "format": "wav", "audio_codec": "pcm_s16le"},
        # Social platforms: their upload specs' size, frame rate and bitrate caps (they re-encode anyway).
        {"name": "tiktok", **social, "max_fps": 30, "max_bitrate": 10_000_000, "audio_bitrate": 128_000},
        {"name": "reels", **social, "max_fps": 30, "max_bitrate": 5_000_000, "audio_bitrate": 128_000},
        {"name": "shorts", **social, "max_fps": 60, "max_bitrate": 12_000_000, "audio_bitrate": 192_000},
        {"name": "youtube", **h264, "width": 1920, "height": 1080, "fit": "pad", "upscale": True, "max_fps": 60,
         "max_bitrate": 12_000_000, "audio_bitrate": 384_000},
    ]
    return {fields["name"]: ExportPreset.model_validate(fields) for fields in made}


BUILTIN: dict[str, ExportPreset] = {}
BUILTIN.update(_builtins())


def _named(value: str) -> ExportPreset:
    preset = BUILTIN.get(value.strip())
    if preset is None:
        raise ValueError(f"unknown preset '{value}'.{did_you_mean(value, BUILTIN)} Built in: {', '.join(BUILTIN)}")
    return preset


def _tag(value: Any) -> str:
    return "name" if isinstance(value, str) else "custom"


_Item = Annotated[
    Annotated[str, AfterValidator(_named), Tag("name")] | Annotated[ExportPreset, Tag("custom")],
    Discriminator(_tag),
]


@payload_model("presets")
class ExportPresets(RootModel[list[_Item]]):
    """The deliveries of an export job: built-in preset names or preset objects, each once."""

    root: list[_Item] = Field(min_length=1, max_length=16)

    @field_validator("root")
    @classmethod
    def _resolve(cls, value: list[Any]) -> list[Any]:
        items = [_named(v) if isinstance(v, str) else v for v in value]  # (already resolved by _named)
        names = [p.name for p in items]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"preset '{twice[0]}' is listed twice: give each output its own name")
        return items

    @property
    def presets(self) -> list[ExportPreset]:
        return list(self.root)  # type: ignore[arg-type]

    @classmethod
    def clean_error_loc(cls, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """Drop the branch tag pydantic puts after the index (``0.name``, ``2.custom``)."""
        if len(loc) >= 2 and loc[1] in ("name", "custom"):
            return (loc[0], *loc[2:])
        return loc
