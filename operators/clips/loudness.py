"""``clips.loudness``: the audio's loudness envelope, for energy, hooks and cutting in silence.

One RMS value per ``hop`` (50 ms), in dBFS, from the 16 kHz mono speech audio the graph
extracts anyway. An hour is 72,000 numbers: small enough to pass between tasks.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.clips.models import Loudness
from operators.context import OpContext
from operators.registry import operator
from operators.speech.pcm import SAMPLE_RATE, iter_pcm, media_path
from operators.types import SourceRef, StoredFile

__all__ = ["FLOOR_DB", "LoudnessParams", "envelope", "loudness"]

FLOOR_DB = -100.0


class LoudnessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hop_seconds: float = Field(0.05, ge=0.01, le=1.0)


def envelope(samples: np.ndarray, hop: int) -> np.ndarray:
    """dBFS of the RMS of each whole ``hop`` of ``samples`` (a trailing partial hop included)."""
    n = samples.size
    if n == 0:
        return np.zeros(0)
    count = -(-n // hop)
    padded = np.zeros(count * hop, np.float64)
    padded[:n] = samples
    power = (padded.reshape(count, hop) ** 2).mean(axis=1)
    if n % hop:
        power[-1] *= hop / (n % hop)
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-20)), FLOOR_DB)


@operator("clips.loudness", weight=1, version=1)
def loudness(audio: SourceRef | StoredFile, *, params: LoudnessParams, ctx: OpContext) -> Loudness:
    """Loudness in dBFS every ``hop_seconds`` of a speech audio file."""
    hop = max(1, int(round(params.hop_seconds * SAMPLE_RATE)))
    parts: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    with ctx.storage.reading(media_path(audio)) as local:
        for block in iter_pcm(local, block_seconds=60.0):
            data = np.concatenate([carry, block]) if carry.size else block
            whole = data.size // hop * hop
            if whole:
                parts.append(envelope(data[:whole], hop))
            carry = data[whole:]
    if carry.size:
        parts.append(envelope(carry, hop))
    db = np.concatenate(parts) if parts else np.zeros(0)
    ctx.progress(1.0)
    return Loudness(hop=hop / SAMPLE_RATE, db=tuple(float(round(v, 2)) for v in db))
