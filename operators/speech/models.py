"""Values passed between the speech operators; every time is in seconds on the source timeline."""

from __future__ import annotations

from pydantic import model_validator

from operators.types import Frozen, StoredFile

__all__ = [
    "CaptionFiles",
    "LanguageReport",
    "LanguageWindow",
    "SpeechMap",
    "Transcript",
    "WHISPER_LANGUAGES",
    "TranscriptSegment",
    "Window",
    "WindowGroup",
    "WindowTranscript",
    "Word",
]

Span = tuple[float, float]

#: The language codes Whisper knows (faster-whisper's ``tokenizer._LANGUAGE_CODES``, copied so that checking
#: a payload's ``language`` at POST does not import faster-whisper and CTranslate2 into the API server;
#: tests/operators/test_speech_languages.py keeps the copy equal to the library's).
WHISPER_LANGUAGES = (
    'af', 'am', 'ar', 'as', 'az', 'ba', 'be', 'bg', 'bn', 'bo', 'br', 'bs', 'ca', 'cs', 'cy', 'da', 'de', 'el',
    'en', 'es', 'et', 'eu', 'fa', 'fi', 'fo', 'fr', 'gl', 'gu', 'ha', 'haw', 'he', 'hi', 'hr', 'ht', 'hu', 'hy',
    'id', 'is', 'it', 'ja', 'jw', 'ka', 'kk', 'km', 'kn', 'ko', 'la', 'lb', 'ln', 'lo', 'lt', 'lv', 'mg', 'mi',
    'mk', 'ml', 'mn', 'mr', 'ms', 'mt', 'my', 'ne', 'nl', 'nn', 'no', 'oc', 'pa', 'pl', 'ps', 'pt', 'ro', 'ru',
    'sa', 'sd', 'si', 'sk', 'sl', 'sn', 'so', 'sq', 'sr', 'su', 'sv', 'sw', 'ta', 'te', 'tg', 'th', 'tk', 'tl',
    'tr', 'tt', 'uk', 'ur', 'uz', 'vi', 'yi', 'yo', 'zh', 'yue',
)


class SpeechMap(Frozen):
    """Where the VAD heard speech: ``segments`` (padded), in time order.

    ``pauses`` are the brief dips inside segments (too short, under ``min_silence_ms``,
    to end one), in time order: where ``speech.plan_windows`` cuts a segment that is too
    long for one Whisper window.
    """

    duration: float
    segments: tuple[Span, ...] = ()
    pauses: tuple[Span, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> SpeechMap:
        for start, end in self.segments:
            if not (0.0 <= start <= end <= self.duration + 1e-6):
                raise ValueError(f"speech segment ({start}, {end}) is outside [0, {self.duration}]")
        return self

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end in self.segments)


class Window(Frozen):
    """One Whisper call's worth of audio: [start, end) and the speech segments inside it."""

    index: int
    count: int
    start: float
    end: float
    segments: tuple[Span, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


class WindowGroup(Frozen):
    """The windows one task transcribes, in batches (``speech.group_windows``)."""

    index: int
    count: int
    windows: tuple[Window, ...] = ()


class Word(Frozen):
    word: str
    start: float
    end: float
    probability: float


class TranscriptSegment(Frozen):
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    #: Set in a mixed-language recording only: the language this segment's window speaks.
    language: str | None = None


class WindowTranscript(Frozen):
    """What Whisper said about one window, already offset to the source timeline."""

    index: int
    start: float
    end: float
    language: str
    segments: tuple[TranscriptSegment, ...] = ()


class Transcript(Frozen):
    language: str
    duration: float
    segments: tuple[TranscriptSegment, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


class LanguageWindow(Frozen):
    start: float
    end: float
    language: str
    probability: float


class LanguageReport(Frozen):
    """The recording's language: ``language`` and its ``probability``, each probed window's, and whether
    the windows speak more than one (``mixed``: then ``languages`` lists them, most heard first)."""

    language: str
    probability: float
    detected: bool
    mixed: bool = False
    languages: tuple[str, ...] = ()
    windows: tuple[LanguageWindow, ...] = ()


class CaptionFiles(Frozen):
    transcript: StoredFile
    srt: StoredFile
    vtt: StoredFile
    text: StoredFile
