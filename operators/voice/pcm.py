"""Sound for noise reduction: resampling the cleaned sound by a whole factor.

Ranges of a source's sound are read with :func:`operators.speech.pcm.decode_range` at DeepFilterNet's rate
(on the audio stream's own timeline, found by seeking, exactly as long as asked).
"""

from __future__ import annotations

import numpy as np

__all__ = ["downsample"]

_TAPS = 48  # half-length of the windowed-sinc low-pass, in output samples


def downsample(samples: np.ndarray, factor: int) -> np.ndarray:
    """Every ``factor``-th sample after a windowed-sinc low-pass at the new Nyquist (no lag).

    Stateless, so a chunk's samples are those of the whole file away from its edges (a chunk's
    edges lie in the parts its task drops).
    """
    if factor == 1:
        return samples.astype(np.float32, copy=False)
    half = _TAPS * factor
    t = np.arange(-half, half + 1) / factor
    taps = np.sinc(t) * np.blackman(t.size) / factor
    filtered = np.convolve(samples.astype(np.float64), taps, mode="same")
    return filtered[::factor].astype(np.float32)
