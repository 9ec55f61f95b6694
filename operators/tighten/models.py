"""Values the tighten operators pass to each other, and the payload's settings; times are source seconds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from operators.media.info import MediaInfo
from operators.registry import payload_model
from operators.types import Frozen, SourceRef

__all__ = ["DEFAULT_FILLERS", "HESITATIONS", "PRESETS", "Cut", "FillerFound", "FillerWords", "Plan", "Removed",
           "Reason", "RemovedWords", "SilenceSettings", "TightenSource"]

#: Pauses longer than this many seconds are cut, per preset.
PRESETS: dict[str, float] = {"natural": 0.6, "fast": 0.3, "extra-fast": 0.15}
#: Hesitation sounds: cut by default, and found in the audio when Whisper left them out.
HESITATIONS: tuple[str, ...] = ("um", "uh", "erm", "er", "hmm", "mm")
DEFAULT_FILLERS: tuple[str, ...] = HESITATIONS

Reason = Literal["silence", "filler", "edit"]


@payload_model("silences")
class SilenceSettings(BaseModel):
    """Which pauses to cut: those over ``min_seconds`` (the preset's unless given), each keeping
    ``keep_seconds`` of its own room tone, split before and after."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    preset: Literal["natural", "fast", "extra-fast"] = "natural"
    min_seconds: float | None = Field(None, ge=0.05, le=30,
                                      description="Cut pauses longer than this (default: the preset's)")
    keep_seconds: float = Field(0.12, ge=0, le=5, description="Room tone a cut pause keeps, split before and after")

    @model_validator(mode="after")
    def _keep_below_min(self) -> SilenceSettings:
        if self.keep_seconds >= self.threshold:
            raise ValueError(f"keep_seconds ({self.keep_seconds:g}) must be below the pauses cut "
                             f"(over {self.threshold:g} s)")
        return self

    @property
    def threshold(self) -> float:
        return self.min_seconds if self.min_seconds is not None else PRESETS[self.preset]


@payload_model("fillers")
class FillerWords(RootModel[bool | list[str]]):
    """``true`` (the default list), ``false`` (none), or the words and phrases to cut (``["um", "you know"]``)."""

    @field_validator("root")
    @classmethod
    def _words(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            if len(value) > 100:
                raise ValueError("at most 100 filler words")
            cleaned = [" ".join(w.lower().split()) for w in value]
            if any(not w or len(w) > 50 for w in cleaned):
                raise ValueError("each filler is a word or phrase of 1 to 50 characters")
            return cleaned
        return value

    @property
    def phrases(self) -> tuple[tuple[str, ...], ...]:
        """Each filler as its words (``("you", "know")``); none when fillers are off."""
        words = DEFAULT_FILLERS if self.root is True else () if self.root is False else tuple(self.root)
        return tuple(tuple(w.split()) for w in words)

    @property
    def hesitations(self) -> bool:
        """Whether hesitation sounds (um, uh…) are cut, so also looked for in the audio."""
        return any(len(p) == 1 and p[0] in HESITATIONS for p in self.phrases)


class RemovedWords(Frozen):
    """Word indices (into the transcript's words) the user cut, checked against the transcript."""

    indices: tuple[int, ...] = ()
    word_count: int = 0


class TightenSource(Frozen):
    """What to tighten: the source asset, and the ranges of it the edit plays (all of it, or a clip version's)."""

    source: SourceRef
    info: MediaInfo
    fps: str
    #: ``[in, out)`` source seconds, in play order; a clip version's video clips (their other fields in ``clips``).
    ranges: tuple[tuple[float, float], ...]
    clips: tuple[dict[str, Any], ...] = ()
    #: The clip version's timeline (None for an asset): its canvas and other tracks are kept.
    timeline: dict[str, Any] | None = None


class Removed(Frozen):
    """A stretch to leave out, before it is put on frames: ``[start, end)`` source seconds."""

    start: float
    end: float
    reason: Reason
    reasons: tuple[Reason, ...] = ()
    words: tuple[int, ...] = ()


class FillerFound(Frozen):
    start: float
    end: float
    #: "words": a filler word of the transcript; "audio": a voiced sound no word covers.
    found_in: Literal["words", "audio"]
    confidence: float
    text: str | None = None
    word: int | None = None
    cut: bool = True


class Cut(Frozen):
    """One entry of ``outputs.cuts``: a kept or removed range, on frame boundaries (source seconds, and
    ``frames``: ``[first, end)`` source frame numbers at the source's rate).

    A removed range's ``audio_start``/``audio_end`` are where the sound was cut (a pause's quietest point
    or its room-tone edge, on a zero crossing); the frame boundary nearest each is the cut. A kept range
    after a removal has the ``crossfade`` (seconds) of the sound at its join with the kept range before."""

    start: float
    end: float
    frames: tuple[int, int]
    kept: bool
    #: The clip of the clip version's video track it comes from (0 for an asset).
    clip: int = 0
    reason: Reason | None = None
    reasons: tuple[Reason, ...] = ()
    audio_start: float | None = None
    audio_end: float | None = None
    crossfade: float | None = None


class Plan(Frozen):
    """What tighten decided: the cuts, the fillers it found, and what they add up to."""

    cuts: tuple[Cut, ...]
    fillers: tuple[FillerFound, ...] = ()
    duration_before: float
    duration_after: float
    words_before: int
    words_after: int
    fps: str

    @property
    def kept(self) -> list[Cut]:
        return [c for c in self.cuts if c.kept]

    @property
    def seconds_saved(self) -> float:
        return round(self.duration_before - self.duration_after, 3)
