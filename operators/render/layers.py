"""The frame plan of a resolved timeline: its layers (visual, text, caption, audio) placed on output frames.

Frozen, slotted records that pickle cheaply and hold no PyAV object: what :mod:`operators.render.resolve`
makes of a timeline and the render operators (plan, frames, segment, mix) read. Re-exported by resolve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from operators.media.info import AssetMedia
from operators.render.timeline import CaptionTrack, CropRect, TextClip, Timeline, VideoClip, to_seconds

__all__ = ["AudioLayer", "CaptionLayer", "RenderInput", "RenderSpec", "TextLayer", "VisualLayer", "frame_of"]


def frame_of(seconds: Fraction, fps: Fraction) -> int:
    """The output frame a time lands on: round half up, exactly."""
    return math.floor(seconds * fps + Fraction(1, 2))


@dataclass(frozen=True, slots=True)
class VisualLayer:
    """A video or image clip placed on output frames ``[start, start + frames)``."""

    track: int
    clip: int
    asset_id: str
    path: str
    image: bool
    start: int
    frames: int
    src_in: Fraction
    clip_spec: VideoClip
    #: Frames over which it comes in over / goes out under its track neighbour, and how.
    transition_in: tuple[str, int] | None = None
    transition_out: int = 0
    fade_in: int = 0
    fade_out: int = 0

    @property
    def end(self) -> int:
        return self.start + self.frames

    def source_time(self, k: int, fps: Fraction) -> Fraction:
        """Seconds into the source shown at output frame ``k``."""
        return self.src_in + Fraction(k - self.start) / fps

    def crop_at(self, k: int, fps: Fraction) -> CropRect | None:
        crop = self.clip_spec.crop
        if not isinstance(crop, list):
            return crop
        t = Fraction(k - self.start) / fps
        keys = [(to_seconds(key.t, fps), key) for key in crop]
        before = [(s, key) for s, key in keys if s <= t]
        if not before:
            return keys[0][1]
        s0, k0 = before[-1]
        after = next(((s, key) for s, key in keys if s > t), None)
        if after is None or self.clip_spec.crop_motion == "hold":
            return k0
        s1, k1 = after
        w = float((t - s0) / (s1 - s0))
        mix = {n: getattr(k0, n) * (1 - w) + getattr(k1, n) * w for n in ("x", "y", "width", "height")}
        return CropRect(**mix)


@dataclass(frozen=True, slots=True)
class TextLayer:
    track: int
    clip: int
    start: int
    frames: int
    spec: TextClip
    font_path: str | None
    fade_in: int = 0
    fade_out: int = 0


@dataclass(frozen=True, slots=True)
class CaptionLayer:
    """A captions track; its words are read and mapped at plan time (``render.plan``)."""

    track: int
    spec: CaptionTrack
    transcript_path: str
    font_path: str | None
    #: The visual layers whose source the transcript describes: words map through their cuts.
    layers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AudioLayer:
    """Sound placed at ``start`` seconds for ``duration``, read from ``src_in`` in the source."""

    label: str
    asset_id: str
    path: str
    start: Fraction
    duration: Fraction
    src_in: Fraction
    volume: float
    fade_in: Fraction
    fade_out: Fraction
    duck: bool = False
    duck_db: float = -12.0
    #: Cleaned by voice enhance (DeepFilterNet3) before it is mixed.
    enhance: bool = False


@dataclass(frozen=True, slots=True)
class RenderSpec:
    width: int
    height: int
    fps: Fraction
    frames: int
    background: str
    visual: tuple[VisualLayer, ...] = ()
    text: tuple[TextLayer, ...] = ()
    captions: tuple[CaptionLayer, ...] = ()
    audio: tuple[AudioLayer, ...] = ()
    fonts: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> Fraction:
        return Fraction(self.frames) / self.fps


@dataclass(frozen=True, slots=True)
class RenderInput:
    """What a render graph gets for a timeline input: the timeline, its assets, its frame plan."""

    timeline: Timeline
    assets: dict[str, AssetMedia]
    spec: RenderSpec

    def to_json(self) -> dict[str, Any]:
        return self.timeline.model_dump(mode="json", by_alias=True)
