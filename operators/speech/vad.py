"""``speech.vad``: where is there speech? Silero VAD (ONNX) streamed over the decoded audio.

The model is the ``silero_vad_v6.onnx`` that faster-whisper ships in its wheel: Silero v6 exported to
take a batch of frames, run the convolutional encoder over all of them at once and the LSTM through
them in order, with its state ``h``, ``c`` ``(1, 1, 128)`` passed in and out. Each 512-sample frame at
16 kHz is prefixed by the previous frame's last 64 samples. Fed 30 s blocks (937 frames a call) with
the state and context carried from block to block, it streams, and costs 3.0 CPU s per 20 minutes of
audio where the frame-by-frame model of the silero-vad package cost 5.3 s (the VAD runs before any
window can start, so this is on every job's critical path).
The segment logic follows silero's ``get_speech_timestamps`` (as faster-whisper's
``vad.py`` does), without its max-duration split: ``speech.plan_windows`` does that,
using the short in-speech ``pauses`` recorded here.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import OperatorError
from operators.registry import operator
from operators.speech.models import SpeechMap
from operators.speech.pcm import SAMPLE_RATE, iter_pcm, media_path, probe_audio_duration
from operators.types import SourceRef, StoredFile

__all__ = ["VadParams", "detect_speech", "speech_probabilities", "vad"]

FRAME = 512
CONTEXT = 64


class VadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.5, gt=0, lt=1, description="speech when the model's probability is at least this")
    min_speech_ms: int = Field(250, ge=0, description="drop speech segments shorter than this")
    min_silence_ms: int = Field(300, ge=0, description="a dip must last this long to end a segment")
    speech_pad_ms: int = Field(200, ge=0, description="widen each segment by this much on both sides")


def _model_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise OperatorError("faster-whisper is not installed, so speech cannot be detected")
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise OperatorError(f"The Silero VAD model is missing from the faster-whisper package: {path}")
    return path


@functools.lru_cache(maxsize=1)
def _session():  # -> onnxruntime.InferenceSession
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    # One thread: the LSTM is sequential, and the encoder's batch is small enough that a second
    # thread mostly adds synchronisation; the worker's other cores run other tasks.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(_model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    if names != {"input", "h", "c"}:
        raise OperatorError(f"Unexpected Silero VAD model inputs {sorted(names)}; expected input, h, c (faster-whisper's v6)")
    return session


def speech_probabilities(blocks: Iterable[np.ndarray], on_block: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
    """The probability of speech for each 512-sample frame of the stream, and its length in samples."""
    session = _session()
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    probs: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    total = 0

    def run(frames: np.ndarray) -> None:
        nonlocal h, c, context
        frames = frames.reshape(-1, FRAME)
        before = np.concatenate([context[None], frames[:-1, -CONTEXT:]])  # each frame's 64 preceding samples
        out, h, c = session.run(None, {"input": np.concatenate([before, frames], axis=1), "h": h, "c": c})
        probs.append(np.asarray(out, np.float32).reshape(-1))
        context = frames[-1, -CONTEXT:].copy()

    for block in blocks:
        total += block.size
        buf = np.concatenate([carry, block]) if carry.size else block
        usable = (buf.size // FRAME) * FRAME
        if usable:
            run(buf[:usable])
        carry = buf[usable:]
        if on_block is not None:
            on_block(total)
    if carry.size:
        run(np.pad(carry, (0, FRAME - carry.size)))
    return (np.concatenate(probs) if probs else np.zeros(0, np.float32)), total


def detect_speech(probs: np.ndarray, n_samples: int, params: VadParams) -> SpeechMap:
    """Turn frame probabilities into padded speech segments and in-speech pauses (seconds)."""
    threshold = params.threshold
    # Hysteresis as in silero: once in speech, only a clearly lower probability counts as a dip.
    neg_threshold = max(threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * params.min_speech_ms / 1000
    min_silence = SAMPLE_RATE * params.min_silence_ms / 1000
    pad = int(SAMPLE_RATE * params.speech_pad_ms / 1000)

    segments: list[list[int]] = []
    pauses: list[tuple[int, int]] = []
    open_pauses: list[tuple[int, int]] = []
    triggered = False
    start = 0
    dip: int | None = None
    for i, p in enumerate(probs):
        t = i * FRAME
        if p >= threshold:
            if dip is not None:
                open_pauses.append((dip, t))
                dip = None
            if not triggered:
                triggered, start, open_pauses = True, t, []
            continue
        if triggered and p < neg_threshold:
            if dip is None:
                dip = t
            if t - dip >= min_silence:
                if dip - start > min_speech:
                    segments.append([start, dip])
                    pauses.extend(open_pauses)
                triggered, dip = False, None
    if triggered and n_samples - start > min_speech:
        segments.append([start, n_samples])
        pauses.extend(open_pauses)

    # Pad each segment; where two are closer than two pads, meet in the middle of the gap.
    for k, seg in enumerate(segments):
        if k == 0:
            seg[0] = max(0, seg[0] - pad)
        if k + 1 < len(segments):
            nxt = segments[k + 1]
            gap = nxt[0] - seg[1]
            if gap < 2 * pad:
                seg[1] += gap // 2
                nxt[0] -= gap - gap // 2
            else:
                seg[1] += pad
                nxt[0] -= pad
        else:
            seg[1] = min(n_samples, seg[1] + pad)
        seg[1] = min(seg[1], n_samples)

    duration = round(n_samples / SAMPLE_RATE, 3)

    def sec(sample: int) -> float:
        return min(round(sample / SAMPLE_RATE, 3), duration)

    return SpeechMap(
        duration=duration,
        segments=tuple((sec(s), sec(e)) for s, e in segments),
        pauses=tuple((sec(s), sec(e)) for s, e in pauses),
    )


@operator("speech.vad", weight=2, version=1)
def vad(audio: SourceRef | StoredFile, *, params: VadParams, ctx: OpContext) -> SpeechMap:
    """Find the speech in a media file's first audio stream (Silero VAD)."""
    path = media_path(audio)
    with ctx.storage.reading(path) as local:
        expected = probe_audio_duration(local)
        total_expected = int(expected * SAMPLE_RATE) if expected else 0

        def report(done: int) -> None:
            if total_expected:
                ctx.progress(0.99 * done / total_expected)

        probs, n_samples = speech_probabilities(iter_pcm(local, block_seconds=30.0), report)
    speech = detect_speech(probs, n_samples, params)
    ctx.progress(1.0)
    ctx.log(
        f"Found {len(speech.segments)} speech segment(s): {speech.speech_seconds:.1f} s of speech "
        f"in {speech.duration:.1f} s of audio"
    )
    return speech
