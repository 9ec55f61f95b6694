"""Values the clip operators pass to each other; every time is in seconds on the source's timeline."""

from __future__ import annotations

from typing import Any

from operators.speech.models import Transcript
from operators.types import Frozen, NewClipVersion, StoredFile

__all__ = ["ClipOut", "CropWindow", "FoundClip", "Loudness", "Reframe", "Sentence", "TranscriptUsed"]


class Sentence(Frozen):
    """A sentence: its words' span, and the silences around it (to the neighbouring words)."""

    index: int
    start: float
    end: float
    text: str
    words: int
    #: Seconds of silence before the first word and after the last (to the neighbouring words,
    #: or to the ends of the source).
    gap_before: float
    gap_after: float
    #: The last word ends with . ? or ! (not only cut by a pause or a length limit).
    terminal: bool = True


class TranscriptUsed(Frozen):
    """The transcript a job works from: its words, and the asset it is (or will be) published as.

    ``asset`` is the transcribe step's JSON file (a :class:`StoredFile`, published as a new
    asset) or, when the payload gave one, that asset's record (``reused: true``).
    ``asset_id`` is known only in the second case.
    """

    path: str
    asset: StoredFile | dict[str, Any]
    asset_id: str | None = None
    transcript: Transcript


class Loudness(Frozen):
    """The audio's loudness in dBFS, one value per ``hop`` seconds (RMS over that hop)."""

    hop: float
    db: tuple[float, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.db) * self.hop


class FoundClip(Frozen):
    """A span the clip finder chose, with its score and why."""

    rank: int
    start: float
    end: float
    #: The sentences it holds, ``[first, last]``, and the topic (TextTiling segment) it starts in.
    first_sentence: int
    last_sentence: int
    topic: int
    score: float
    components: dict[str, float]
    reasons: tuple[str, ...]
    title: str
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


class CropWindow(Frozen):
    """One crop for one shot: from ``t`` seconds into the clip, a rectangle in source fractions."""

    t: float
    x: float
    y: float
    width: float
    height: float
    #: The main face's box (source fractions x, y, w, h) the crop is centred on; None: centred.
    face: tuple[float, float, float, float] | None = None


class Reframe(Frozen):
    """The crop path of one clip: a window per shot, held for the whole shot."""

    start: float
    end: float
    shots: tuple[float, ...] = ()
    crops: tuple[CropWindow, ...] = ()
    frames_seen: int = 0


class ClipOut(Frozen):
    """One entry of ``outputs.clips``: the clip version it became, and its score explained."""

    clip_version_id: NewClipVersion
    rank: int
    start: float
    end: float
    duration: float
    score: float
    components: dict[str, float]
    reasons: tuple[str, ...]
    title: str
    text: str
