"""Several Whisper windows in one batched call, with the two safety nets batching drops.

Why batch: on a CPU, one encoder and beam-search call over 8 windows costs about 30 % less than
8 calls (bigger matrix products, one Python loop). faster-whisper's ``BatchedInferencePipeline``
does that, but it leaves out two things its sequential ``transcribe`` does, and each cost words
or time in our measurements (bench/README.md, "Transcribe: dense speech"):

- **The unclosed tail.** When a window's tokens end without a closing timestamp, the sequential
  decoder starts again from the last timestamp; the batched one drops the rest of the window.
  On 221 s of dense speech that lost a 6 s tail (18 words). Here every window whose segments end
  more than ``TAIL_SECONDS`` before its end gets its tail decoded again, batched with the others'.
- **The temperature fallback.** The sequential decoder re-samples a window at 5 temperatures
  (5 candidates each) when its text compresses too well (gzip ratio > 2.4), Whisper's guard
  against looping. Real speech that repeats itself (a chorus, a slogan, beckett.wav read 3 times
  in a window) trips it on every window: 6 passes for the same text, which made a 28 s window of
  that speech cost 5 s instead of 0.8 s. Batching runs one pass at temperature 0; only a window
  whose text *is* a loop (:func:`looks_like_loop`) is decoded again with the full fallback.

Times returned are on each window's own audio (0 = its first sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["BatchSettings", "DecodedSegment", "DecodedWord", "decode_each_language", "decode_windows",
           "language_probabilities", "looks_like_loop"]

SAMPLE_RATE = 16000
#: A window whose last segment ends this long before its audio does still has speech to decode:
#: our windows hold speech only (silences cut to 0.5 s), so a second is never a trailing pause.
TAIL_SECONDS = 1.0
#: Rounds of tail decoding; one is nearly always enough, two bound the rare long monologue.
TAIL_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class DecodedWord:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class DecodedSegment:
    start: float
    end: float
    text: str
    words: tuple[DecodedWord, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchSettings:
    language: str | None = "en"
    #: "translate": English text from speech in any language (multilingual models).
    task: str = "transcribe"
    beam_size: int = 5
    batch_size: int = 8
    initial_prompt: str | None = None
    #: Whisper's own threshold: above it a text compresses "too well" (see looks_like_loop).
    compression_ratio_threshold: float = 2.4
    fallback_temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(slots=True)
class _Piece:
    """A stretch of one window still to decode: [start, end) seconds of that window's audio."""

    window: int
    start: float
    end: float
    segments: list[DecodedSegment] = field(default_factory=list)


def looks_like_loop(text: str, seconds: float, threshold: float = 2.4) -> bool:
    """Whether Whisper's text for ``seconds`` of speech is a decoding loop, not repeated speech.

    A loop compresses well (ratio above Whisper's ``threshold``) *and* shows it in a way speech
    cannot: one phrase of up to 6 words said 4 times running ("thank you thank you ..."), or more
    words than anyone says in that time (over 6 words a second; fast talkers reach ~4.5).
    A speaker repeating a sentence passes the ratio test but neither of the others.
    """
    from faster_whisper.transcribe import get_compression_ratio  # Whisper's own measure (imported late: heavy)

    if get_compression_ratio(text) <= threshold:
        return False
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    if len(words) > 6.0 * max(seconds, 1.0):
        return True
    # An n-word phrase said 4 times running: 3n words in a row each equal to the word n before it,
    # wherever the phrase starts.
    for n in range(1, 7):
        run = 0
        for word, later in zip(words, words[n:]):
            run = run + 1 if word == later else 0
            if run >= 3 * n:
                return True
    return False


def decode_windows(model: Any, windows: list[np.ndarray], settings: BatchSettings) -> tuple[str, list[list[DecodedSegment]]]:
    """Transcribe each window's 16 kHz samples (each at most 30 s): the language (``settings.language``, or
    the one Whisper detected in the first batch), and the segments of each window, in order."""
    pieces = [_Piece(i, 0.0, w.size / SAMPLE_RATE) for i, w in enumerate(windows) if w.size]
    results: list[list[DecodedSegment]] = [[] for _ in windows]
    language = settings.language
    for round_ in range(1 + TAIL_ROUNDS):
        if not pieces:
            break
        detected = _decode_batch(model, windows, pieces, settings)
        language = language or detected
        tails = []
        for piece in pieces:
            if round_ == 0:
                piece.segments = _unloop(model, windows[piece.window], piece, settings)
            results[piece.window].extend(piece.segments)
            tail = _tail(piece)
            if tail is not None:
                tails.append(tail)
        pieces = tails
    return language or "en", results


def decode_each_language(model: Any, windows: list[np.ndarray],
                         settings: BatchSettings) -> tuple[list[str], list[list[DecodedSegment]]]:
    """As :func:`decode_windows`, each window in the language it speaks: the language head classifies
    each window (its first 30 s), then the windows of each language are decoded together."""
    languages = [_language_of(model, w) if w.size else "en" for w in windows]
    results: list[list[DecodedSegment]] = [[] for _ in windows]
    for language in dict.fromkeys(languages):
        chosen = [i for i, code in enumerate(languages) if code == language]
        _, decoded = decode_windows(model, [windows[i] for i in chosen], replace(settings, language=language))
        for i, segments in zip(chosen, decoded, strict=True):
            results[i] = segments
    return languages, results


def language_probabilities(model: Any, samples: np.ndarray) -> dict[str, float]:
    """Whisper's language head on the first 30 s of ``samples``: each language code's probability."""
    _, _, probabilities = model.detect_language(samples[: 30 * SAMPLE_RATE])
    return {str(code): float(p) for code, p in probabilities}


def _language_of(model: Any, samples: np.ndarray) -> str:
    probabilities = language_probabilities(model, samples)
    return max(probabilities, key=probabilities.__getitem__)


def _tail(piece: _Piece) -> _Piece | None:
    last = piece.segments[-1].end if piece.segments else piece.start
    if not piece.segments or piece.end - last <= TAIL_SECONDS:
        return None
    return _Piece(piece.window, last, piece.end)


def _decode_batch(model: Any, windows: list[np.ndarray], pieces: list[_Piece], settings: BatchSettings) -> str:
    """One batched pass over ``pieces``: fills each piece's segments (times on its window's audio); the language."""
    from faster_whisper import BatchedInferencePipeline

    # The pieces end to end in one array, each a clip of its own: the pipeline batches clips.
    audio = np.concatenate([windows[p.window][int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)] for p in pieces])
    sizes = [int(p.end * SAMPLE_RATE) - int(p.start * SAMPLE_RATE) for p in pieces]
    offsets = np.concatenate([[0], np.cumsum(sizes)]) / SAMPLE_RATE
    clips = [{"start": float(offsets[i]), "end": float(offsets[i + 1])} for i in range(len(pieces))]
    segments, info = BatchedInferencePipeline(model).transcribe(
        audio,
        language=settings.language,
        task=settings.task,
        beam_size=settings.beam_size,
        batch_size=settings.batch_size,
        clip_timestamps=clips,
        vad_filter=False,  # speech.vad chose the audio
        word_timestamps=True,
        # Timestamp tokens give sentence-sized segments, and tell where an unclosed tail begins.
        without_timestamps=False,
        initial_prompt=settings.initial_prompt,
        temperature=0.0,
    )
    for seg in segments:
        # A segment's clip is the one its ``seek`` points into: the clip start in 10 ms frames,
        # truncated (2225.6 -> 2225), hence the frame added before the search.
        k = int(np.clip(np.searchsorted(offsets * 100, seg.seek + 1.0, side="right") - 1, 0, len(pieces) - 1))
        shift = pieces[k].start - offsets[k]
        pieces[k].segments.append(_segment(seg, shift, pieces[k].end))
    return str(info.language)


def _segment(seg: Any, shift: float, limit: float) -> DecodedSegment:
    def at(t: float) -> float:
        return float(min(max(t + shift, 0.0), limit))

    words = tuple(
        DecodedWord(w.word, at(w.start), at(w.end), float(w.probability)) for w in (seg.words or ()) if w.word.strip()
    )
    return DecodedSegment(at(seg.start), at(seg.end), seg.text, words)


def _unloop(model: Any, samples: np.ndarray, piece: _Piece, settings: BatchSettings) -> list[DecodedSegment]:
    """The piece's segments, decoded again with Whisper's fallback if batching produced a loop."""
    text = " ".join(s.text.strip() for s in piece.segments)
    if not looks_like_loop(text, piece.end - piece.start, settings.compression_ratio_threshold):
        return piece.segments
    segments, _info = model.transcribe(
        samples,
        language=settings.language,
        task=settings.task,
        beam_size=settings.beam_size,
        word_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
        initial_prompt=settings.initial_prompt,
        temperature=list(settings.fallback_temperatures),
        compression_ratio_threshold=settings.compression_ratio_threshold,
    )
    return [_segment(s, 0.0, piece.end) for s in segments]
