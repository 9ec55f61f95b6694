"""HDR and wide-gamut pictures as SDR BT.709: the maths, baked into a 3D LUT for libavfilter's ``lut3d``.

The bundled FFmpeg has no ``zscale``, and its ``tonemap`` needs linear light that nothing else
in it can give without clipping. FFmpeg 8's swscale can convert transfers and primaries, but it
builds its own tone-mapping tables for every scaler (1-5 s per graph, measured) and then costs
~2.5x this LUT per frame. So the conversion is computed here, in numpy, once per kind of source
and machine, as a 33³ ``.cube`` (ΔE < 1 against the exact maths on the test card), and
``lut3d`` applies it with tetrahedral interpolation to the source's RGB signal.

The maths (BT.2100, BT.2408): the signal becomes display light (PQ: its EOTF; HLG: its inverse
OETF and the OOTF of a 1000 cd/m² display, system gamma 1.2), relative to HDR reference white
(203 cd/m², which SDR white stands for), converted to BT.709 primaries (out-of-gamut parts
clipped). Light up to ``KNEE`` of SDR white is kept as it is; brighter light is compressed with
mpv's Möbius curve on the brightest channel (hue kept), so the source's peak lands on SDR
white instead of everything above reference white clipping. BT.1886's gamma (2.4) encodes it, as
swscale's own SDR conversions do. Wide-gamut SDR (BT.2020, Display P3) only changes primaries.

This swscale reads 16-bit RGB as if 65535 were 256/255 of white (the LUT's output comes out up to
1.4 code values brighter near white, under 0.5 ΔE); that is left as it is rather than bending
the LUT to one FFmpeg build.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["KNEE", "SDR_WHITE_NITS", "WIDE_PRIMARIES", "lut_file", "to_sdr", "tone_map"]

#: BT.2408: HDR reference (diffuse) white, the light SDR white stands for (cd/m²).
SDR_WHITE_NITS = 203.0
#: Light below this fraction of SDR white passes the tone curve unchanged.
KNEE = 0.8
_D65 = (0.3127, 0.3290)
#: Red, green and blue chromaticities of the gamuts converted; all D65.
_PRIMARIES = {"bt709": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
              "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
              "smpte432": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))}
#: Gamuts wider than BT.709 that are converted. SD primaries (BT.601's) are not: they differ from
#: BT.709 by less than players' own error, and players show them as BT.709.
WIDE_PRIMARIES = frozenset(_PRIMARIES) - {"bt709"}
_LUT_SIZE = 33


def _rgb_to_xyz(primaries: str) -> np.ndarray:
    """The linear RGB → CIE XYZ matrix of a gamut (white at Y = 1)."""
    xy = np.array(_PRIMARIES[primaries])
    columns = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    white = np.array([_D65[0] / _D65[1], 1.0, (1 - _D65[0] - _D65[1]) / _D65[1]])
    return columns * np.linalg.solve(columns, white)


def _to_bt709(primaries: str) -> np.ndarray:
    return np.linalg.inv(_rgb_to_xyz("bt709")) @ _rgb_to_xyz(primaries)


def _pq_light(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: PQ signal (0..1) → cd/m²."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.clip(signal, 0.0, 1.0) ** (1 / m2)
    return 10000.0 * (np.maximum(p - c1, 0.0) / (c2 - c3 * p)) ** (1 / m1)


def _hlg_light(signal: np.ndarray, peak: float) -> np.ndarray:
    """BT.2100 HLG: signal (0..1, BT.2020 RGB) → display light (cd/m²) on a ``peak`` cd/m² display."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(signal, 0.0, 1.0)
    scene = np.where(e <= 0.5, e * e / 3, (np.exp((e - c) / a) + b) / 12)
    gamma = 1.2 + 0.42 * np.log10(peak / 1000.0)
    ys = np.maximum(scene @ np.array([0.2627, 0.6780, 0.0593]), 1e-12)
    return peak * ys[..., None] ** (gamma - 1) * scene


def tone_map(light: np.ndarray, peak: float) -> np.ndarray:
    """Linear RGB relative to SDR white (…, 3) → 0..1: Möbius roll-off of the brightest channel.

    ``peak``: the brightest light the source holds, relative to SDR white. Below ``KNEE`` the
    light is returned as it is; above, mpv's Möbius curve keeps the slope at the knee and puts
    ``peak`` on 1; every channel is scaled with the brightest one, so hues do not shift.
    """
    light = np.maximum(np.asarray(light, dtype=np.float64), 0.0)
    top = light.max(axis=-1, keepdims=True)
    peak = max(peak, 1.0 + 1e-3)
    j = KNEE
    a = -j * j * (peak - 1.0) / (j * j - 2.0 * j + peak)
    b = (j * j - 2.0 * j * peak + peak) / (peak - 1.0)
    rolled = (b * b + 2.0 * b * j + j * j) / (b - a) * (top + a) / (top + b)
    mapped = np.where(top <= j, top, np.minimum(rolled, 1.0))
    return np.clip(light * np.where(top > 0, mapped / np.maximum(top, 1e-12), 0.0), 0.0, 1.0)


def to_sdr(signal: np.ndarray, transfer: str, primaries: str, peak_nits: float) -> np.ndarray:
    """A source's RGB signal (…, 3; 0..1) → SDR BT.709 RGB code values (0..1).

    ``transfer``: ``"smpte2084"``, ``"arib-std-b67"``, or anything else for SDR (gamma 2.4).
    """
    if transfer == "smpte2084":
        light, peak = _pq_light(signal) / SDR_WHITE_NITS, peak_nits / SDR_WHITE_NITS
    elif transfer == "arib-std-b67":
        light, peak = _hlg_light(signal, peak_nits) / SDR_WHITE_NITS, peak_nits / SDR_WHITE_NITS
    else:
        light, peak = np.clip(signal, 0.0, 1.0) ** 2.4, 1.0
    linear = np.maximum(light @ _to_bt709(primaries).T, 0.0)
    mapped = tone_map(linear, peak) if peak > 1.0 else np.clip(linear, 0.0, 1.0)
    return mapped ** (1 / 2.4)


def lut_file(transfer: str, primaries: str, peak_nits: float) -> str:
    """The ``.cube`` for :func:`to_sdr`, made once per machine; a path ``lut3d=file=`` can take."""
    hdr = transfer in ("smpte2084", "arib-std-b67")
    name = f"{transfer if hdr else 'sdr'}-{primaries}-{int(peak_nits) if hdr else 0}-k{int(KNEE * 100)}-v1.cube"
    folder = Path(tempfile.gettempdir()) / "ave-colour"
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        grid = np.linspace(0.0, 1.0, _LUT_SIZE)
        blue, green, red = np.meshgrid(grid, grid, grid, indexing="ij")  # .cube: red varies fastest
        values = to_sdr(np.stack([red, green, blue], axis=-1).reshape(-1, 3), transfer, primaries, peak_nits)
        # Written aside and renamed: other workers may be reading or writing the same file.
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            out.write(f"LUT_3D_SIZE {_LUT_SIZE}\n")
            np.savetxt(out, values, fmt="%.6f")
        os.replace(tmp, path)
    # libavfilter option syntax: ':' and '\' would end or escape the value.
    return str(path).replace("\\", "/").replace(":", r"\:")
