"""The timeline a clip version holds and ``render`` turns into video: pydantic models, JSON Schema.

Time is rational and frame-exact. ``fps`` is a rational (``"30000/1001"``, ``30``); a time is
seconds (a number, or an exact fraction string such as ``"1001/30000"``) or frames at the
timeline's rate (``"45f"``). Every clip's start and length are snapped to output frames when
the timeline is resolved (:mod:`operators.render.resolve`), so every cut lands on a frame.

Tracks are drawn bottom to top: the first track is at the back. A video track holds video
and image clips, a text track titles, a captions track words from a transcript, an audio
track music or voice-over. Strings may hold ``{{NAME}}`` merge fields, filled from the job
payload's ``merge`` before the timeline is checked (as Shotstack's merge fields are).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from operators.asset_uses import AssetUse, bind_assets
from operators.registry import payload_model
from operators.render.captions import STYLES as CAPTION_STYLES
from operators.render.styling.presets import (
    BUNDLED_FONT_NAMES,
    SAFE_AREAS,
    Brand,
    brand_caption_update,
    brand_text_update,
)
from operators.render.values import (
    ASPECT_RATIOS,
    Color,
    FPS,
    Frames,
    MAX_CANVAS,
    Position,
    PositiveTime,
    TRANSITIONS,
    Time,
    Volume,
    parse_color,
    parse_fps,
    to_seconds,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "ASPECT_RATIOS",
    "AudioClip",
    "AudioTrack",
    "CAPTION_STYLES",
    "CaptionTrack",
    "Canvas",
    "CropKey",
    "CropRect",
    "Frames",
    "MAX_CANVAS",
    "Offset",
    "Position",
    "TextClip",
    "TextTrack",
    "Timeline",
    "Track",
    "Transition",
    "TRANSITIONS",
    "VideoClip",
    "VideoTrack",
    "RenderOutput",
    "parse_color",
    "parse_fps",
    "to_seconds",
]

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _SetOnly(_Model):
    """A model whose defaults may come from elsewhere (a caption preset, a brand kit): it serialises only the
    fields that were set, so a stored timeline read back still tells them from the ones left out."""

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        keep = self.model_fields_set | {"type"}
        return {k: v for k, v in data.items() if k in keep} if isinstance(data, dict) else data


def _font_asset(font: str) -> bool:
    """Whether a ``font`` names an asset (not the default or a bundled font)."""
    return font != "default" and font not in BUNDLED_FONT_NAMES


class Offset(_Model):
    """A shift from the anchored position, as fractions of the canvas (x right, y down)."""

    x: float = Field(0.0, ge=-1, le=1)
    y: float = Field(0.0, ge=-1, le=1)


class CropRect(_Model):
    """The part of the source picture to show, as fractions of its width and height."""

    x: float = Field(0.0, ge=0, le=1)
    y: float = Field(0.0, ge=0, le=1)
    width: float = Field(1.0, gt=0, le=1)
    height: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _inside(self) -> CropRect:
        if self.x + self.width > 1 + 1e-6 or self.y + self.height > 1 + 1e-6:
            raise ValueError("the crop rectangle must lie inside the picture (x + width <= 1, y + height <= 1)")
        return self


class CropKey(CropRect):
    """A crop at ``t`` seconds into the clip (0 is the clip's first frame)."""

    t: Time


class Transition(_Model):
    """How a clip comes in over the clip before it on the same track: they overlap by ``duration``."""

    type: Literal[TRANSITIONS] = "fade"  # type: ignore[valid-type]
    duration: PositiveTime = Fraction(1, 2)


class _Timed(_Model):
    #: Start on the output timeline; omitted: right after the track's previous clip (overlapping
    #: it by the transition, if any).
    at: Time | None = None
    fade_in: Time = Fraction(0)
    fade_out: Time = Fraction(0)


class VideoClip(_Timed):
    """A range of a video asset, or an image asset shown for ``duration``."""

    asset: str = Field(min_length=1, max_length=200)
    in_: Time = Field(Fraction(0), alias="in")
    #: End in the source; omitted: the asset's end (images need ``duration`` instead).
    out: Time | None = None
    duration: Time | None = None
    fit: Literal["cover", "contain", "fill"] = "cover"
    #: A rectangle, or crop keys (a path: held until the next key, or eased with ``crop_motion``).
    crop: CropRect | list[CropKey] | None = None
    crop_motion: Literal["hold", "linear"] = "hold"
    position: Position = "center"
    offset: Offset = Offset()
    scale: float = Field(1.0, gt=0, le=10)
    opacity: float = Field(1.0, ge=0, le=1)
    volume: Volume = 1.0
    transition: Transition | None = None
    #: The clip's sound crossfades with the previous clip's over this long, centred on the cut, while the
    #: pictures cut (no transition): each sound runs on past its cut by half of it. 0: a plain cut.
    audio_crossfade: Time = Fraction(0)
    #: Voice enhance: take the noise out of the clip's sound (DeepFilterNet3) before mixing it.
    enhance: bool = False

    @model_validator(mode="after")
    def _range(self) -> VideoClip:
        if self.out is not None and self.duration is not None:
            raise ValueError("give out or duration, not both")
        if isinstance(self.crop, list):
            if not self.crop:
                raise ValueError("crop keys: give at least one")
            times = [k.t for k in self.crop]
            if any(type(a) is not type(b) for a, b in zip(times, times[1:], strict=False)) or times != sorted(times):
                raise ValueError("crop keys must be in time order")
        return self


class TextClip(_SetOnly, _Timed):
    """A title or label: rasterised once, drawn on the frames where it shows."""

    text: str = Field(min_length=1, max_length=2000)
    duration: PositiveTime
    #: "default" (the bundled scalable font), "dejavu-sans" / "dejavu-sans-bold" or the id of a font asset (TTF/OTF).
    font: str = Field("default", min_length=1, max_length=200)
    size: int = Field(64, ge=4, le=1000, description="Font size in pixels of the canvas")
    color: Color = "#ffffff"
    outline_color: Color = "#000000"
    outline_width: int = Field(0, ge=0, le=50)
    background: Color | None = None
    padding: int = Field(16, ge=0, le=500)
    align: Literal["left", "center", "right"] = "center"
    #: Wrap lines at this fraction of the canvas width.
    max_width: float = Field(0.9, gt=0, le=1)
    position: Position = "center"
    offset: Offset = Offset()
    opacity: float = Field(1.0, ge=0, le=1)


class AudioClip(_Timed):
    """Music or voice-over: a range of an audio (or video) asset's sound."""

    asset: str = Field(min_length=1, max_length=200)
    in_: Time = Field(Fraction(0), alias="in")
    out: Time | None = None
    volume: Volume = 1.0
    #: Lower this clip under the other audio (speech) while it is heard, by ``duck_db``.
    duck: bool = False
    duck_db: float = Field(-12.0, ge=-60, le=0)
    #: Voice enhance: take the noise out of this sound (DeepFilterNet3) before mixing it.
    enhance: bool = False


class VideoTrack(_Model):
    type: Literal["video"] = "video"
    clips: list[VideoClip] = Field(min_length=1, max_length=2000)


class TextTrack(_Model):
    type: Literal["text"]
    clips: list[TextClip] = Field(min_length=1, max_length=2000)


class AudioTrack(_Model):
    type: Literal["audio"]
    clips: list[AudioClip] = Field(min_length=1, max_length=2000)


class CaptionTrack(_SetOnly):
    """Words from a transcript asset (transcribe's JSON), mapped through the video clips' cuts.

    A word shows only where the clip that plays it is on the output timeline: a word cut out
    of the edit never shows. ``media`` names the asset the transcript was made from; omitted,
    words map through every clip of the first video track. ``style`` names a preset
    (``operators.render.styling.presets``): its defaults apply to the fields left out here.
    """

    type: Literal["captions"]
    transcript: str = Field(min_length=1, max_length=200)
    media: str | None = None
    style: Literal[CAPTION_STYLES] = "lines"  # type: ignore[valid-type]
    #: "default", "dejavu-sans" / "dejavu-sans-bold" (bundled) or the id of a font asset (TTF/OTF).
    font: str = Field("default", min_length=1, max_length=200)
    size: int = Field(56, ge=4, le=1000)
    color: Color = "#ffffff"
    highlight_color: Color = "#ffd400"
    outline_color: Color = "#000000"
    outline_width: int = Field(3, ge=0, le=50)
    background: Color | None = None
    position: Position = "bottom"
    #: Safe margin from the canvas edges, as a fraction of its height.
    margin: float = Field(0.08, ge=0, le=0.45)
    max_chars: int = Field(42, ge=8, le=200)
    max_lines: int = Field(2, ge=1, le=4)
    #: Words shown at once by ``word-pop`` and ``pop``.
    words_per_pop: int = Field(3, ge=1, le=3)
    #: Colour of the keyword of each line, when ``emphasize_keywords`` (``bold-upper``).
    accent_color: Color = "#ffd400"
    emphasize_keywords: bool = False
    #: The words to emphasise; omitted: the transcript's most distinctive words (TF-IDF over its segments).
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(None, max_length=500)
    uppercase: bool = False
    #: Keep clear of an app's interface on a 9:16 canvas (``tiktok``, ``reels``, ``shorts``): see ``SAFE_AREAS``.
    safe_area: Literal[tuple(SAFE_AREAS)] = "none"  # type: ignore[valid-type]


Track = Annotated[VideoTrack | TextTrack | AudioTrack | CaptionTrack, Field(discriminator="type")]


class Canvas(_Model):
    """The output picture: ``width`` and ``height``, or ``aspect_ratio`` and ``height``."""

    width: int | None = Field(None, ge=2, le=MAX_CANVAS, description=f"Even, at most {MAX_CANVAS} (the canvas limit)")
    height: int = Field(1080, ge=2, le=MAX_CANVAS, description=f"Even, at most {MAX_CANVAS}")
    aspect_ratio: Literal["9:16", "1:1", "4:5", "16:9"] | None = None
    fps: FPS = Fraction(30)
    background: Color = "#000000"

    @model_validator(mode="before")
    @classmethod
    def _sizes(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("width") is None and data.get("aspect_ratio") is None:
            data = {**data, "aspect_ratio": "16:9"}
        return data

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int | None, info: Any) -> int | None:
        if value is not None and value % 2:
            raise ValueError(f"{info.field_name} must be even (4:2:0 video needs even sizes), not {value}")
        return value

    @model_validator(mode="after")
    def _sized(self) -> Canvas:
        if self.width is not None and self.aspect_ratio is not None:
            raise ValueError("give width and height, or aspect_ratio and height, not both")
        if self.size[0] > MAX_CANVAS:
            raise ValueError(f"the canvas is {self.size[0]} px wide: at most {MAX_CANVAS}")
        return self

    @property
    def size(self) -> tuple[int, int]:
        if self.width is not None:
            return self.width, self.height
        ratio = ASPECT_RATIOS[self.aspect_ratio or "16:9"]
        return max(2, round(self.height * ratio / 2) * 2), self.height


@payload_model("timeline")
class Timeline(_Model):
    """A whole edit: the canvas, then the tracks from back to front."""

    canvas: Canvas = Canvas()
    tracks: list[Track] = Field(min_length=1, max_length=64)
    #: The output length; omitted: the end of the last clip.
    duration: Time | None = None
    #: A brand kit of the project (``bk_…``): its font and colours for the text and captions fields left out.
    brand_kit: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _something_to_show(self) -> Timeline:
        if not any(isinstance(t, VideoTrack | TextTrack) for t in self.tracks) and self.duration is None:
            if not any(isinstance(t, AudioTrack) for t in self.tracks):
                raise ValueError("the timeline is empty: add a video, text or audio track")
        return self

    @property
    def fps(self) -> Fraction:
        return self.canvas.fps

    @classmethod
    def clean_error_loc(cls, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """Drop the track-type tag pydantic puts after ``tracks.<i>`` (``tracks.0.video.clips``)."""
        out = list(loc)
        for i in range(len(out) - 2):
            if out[i] == "tracks" and isinstance(out[i + 1], int) and out[i + 2] in _TRACK_TYPES:
                del out[i + 2]
                break
        return tuple(out)

    # -- the payload model protocol: the assets it names, checked by the scheduler ---------------
    def asset_uses(self) -> list[AssetUse]:
        """Every asset the timeline names, with the path to where it is named."""
        uses: list[AssetUse] = []
        for t, track in enumerate(self.tracks):
            if isinstance(track, VideoTrack | AudioTrack):
                role = "visual" if isinstance(track, VideoTrack) else "audio"
                uses += [AssetUse(("tracks", t, "clips", c, "asset"), clip.asset, role)
                         for c, clip in enumerate(track.clips)]
            elif isinstance(track, TextTrack):
                uses += [AssetUse(("tracks", t, "clips", c, "font"), clip.font, "font")
                         for c, clip in enumerate(track.clips) if _font_asset(clip.font)]
            elif isinstance(track, CaptionTrack):
                uses.append(AssetUse(("tracks", t, "transcript"), track.transcript, "transcript"))
                if _font_asset(track.font):
                    uses.append(AssetUse(("tracks", t, "font"), track.font, "font"))
                if track.media is not None:
                    uses.append(AssetUse(("tracks", t, "media"), track.media, "visual"))
        return uses

    def with_brand(self, brand: Brand) -> Timeline:
        """This timeline with a brand kit's font and colours in the caption and text fields it left out (they
        count as set, so a caption preset does not override them)."""
        tracks: list[Any] = []
        for track in self.tracks:
            if isinstance(track, CaptionTrack):
                track = track.model_copy(update=brand_caption_update(track, brand))
            elif isinstance(track, TextTrack):
                clips = [c.model_copy(update=brand_text_update(c, brand)) for c in track.clips]
                track = track.model_copy(update={"clips": clips})
            tracks.append(track)
        return self.model_copy(update={"tracks": tracks})

    def with_assets(self, assets: dict[str, Any], **limits: Any) -> Any:
        """The value the render graph sees: the timeline placed on frames (``operators.render.resolve``'s
        registered binding); raises ``TimelineError``."""
        return bind_assets(self, assets, **limits)


_TRACK_TYPES = ("video", "text", "audio", "captions")


@payload_model("render_output")
class RenderOutput(_Model):
    """How a render is encoded: H.264 video and AAC sound in a faststart MP4."""

    format: Literal["mp4"] = "mp4"
    codec: Literal["h264"] = "h264"
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor: lower is better and larger")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    audio_bitrate: int = Field(192000, ge=32000, le=512000)
    gop_seconds: float = Field(2.0, gt=0, le=20, description="Keyframe interval")
