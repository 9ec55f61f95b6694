"""Compositing on 4:2:0 planes: pictures and text drawn onto a canvas without leaving YUV.

Decoded video is YUV 4:2:0 and so is what x264 takes, so the canvas stays in that form:
one ``(h * 3 / 2, w)`` uint8 array, PyAV's own ``yuv420p`` ndarray layout, whose Y, U and V
planes are views. Blending in YUV is the same as blending in (gamma-encoded) RGB, because
the conversion is affine; the only cost is chroma at half resolution, which is what the
output has anyway. Text arrives as RGBA once per state and is converted once (BT.709,
limited range, what the encoder is tagged with).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Canvas", "Picture", "rgba_to_picture", "solid_yuv"]

_KR, _KB = 0.2126, 0.0722


def _rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in 0..1 (…, 3) to limited-range BT.709 Y, Cb, Cr in 0..255."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB))
    cr = (r - y) / (2 * (1 - _KR))
    return np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], axis=-1)


def solid_yuv(rgba: tuple[int, int, int, int]) -> tuple[int, int, int]:
    y, u, v = _rgb_to_yuv(np.array(rgba[:3], dtype=np.float64) / 255.0)
    return int(round(y)), int(round(u)), int(round(v))


def planes(buffer: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of Y, U and V in a ``yuv420p`` ndarray (U and V are stored as h/4 rows of w)."""
    q = height // 4 if height % 4 == 0 else None
    y = buffer[:height]
    if q is not None:
        u = buffer[height:height + q].reshape(height // 2, width // 2)
        v = buffer[height + q:].reshape(height // 2, width // 2)
    else:  # heights not divisible by 4: the chroma planes do not start on a row boundary
        flat = buffer.reshape(-1)
        c = (height // 2) * (width // 2)
        u = flat[width * height:width * height + c].reshape(height // 2, width // 2)
        v = flat[width * height + c:width * height + 2 * c].reshape(height // 2, width // 2)
    return y, u, v


@dataclass(slots=True)
class Picture:
    """A YUV 4:2:0 picture with optional alpha (full-resolution and chroma-resolution)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    alpha: np.ndarray | None = None  # float32 0..1, (h, w)
    alpha_c: np.ndarray | None = None  # float32 0..1, (h/2, w/2)
    #: The whole ``yuv420p`` array the planes view, when they came from one.
    buffer: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[0]

    @classmethod
    def from_yuv420p(cls, buffer: np.ndarray, width: int, height: int) -> Picture:
        return cls(*planes(buffer, width, height), buffer=buffer)


def rgba_to_picture(rgba: np.ndarray) -> Picture:
    """An RGBA image (even sizes) as a YUV picture with alpha; done once per text state."""
    h, w = rgba.shape[:2]
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    yuv = _rgb_to_yuv(rgb)
    # Chroma from alpha-weighted 2x2 means: transparent pixels must not tint the edge.
    a4 = alpha.reshape(h // 2, 2, w // 2, 2)
    weight = a4.sum(axis=(1, 3))
    safe = np.where(weight > 0, weight, 1.0)

    def down(channel: np.ndarray) -> np.ndarray:
        c4 = (channel * alpha).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
        return np.clip(np.where(weight > 0, c4 / safe, 128.0), 0, 255).astype(np.uint8)

    y = np.clip(np.round(yuv[..., 0]), 0, 255).astype(np.uint8)
    return Picture(y=y, u=down(yuv[..., 1]), v=down(yuv[..., 2]), alpha=alpha, alpha_c=weight / 4.0)


class Canvas:
    """One output frame being composed."""

    def __init__(self, width: int, height: int, background: tuple[int, int, int]) -> None:
        self.width, self.height = width, height
        self.buffer = np.empty((height * 3 // 2, width), dtype=np.uint8)
        self.y, self.u, self.v = planes(self.buffer, width, height)
        self.background = background
        self.clear()

    @classmethod
    def on(cls, pic: Picture) -> Canvas:
        """Draw straight onto an existing picture's planes (a frame about to be encoded)."""
        canvas = cls.__new__(cls)
        canvas.width, canvas.height = pic.size
        canvas.buffer, canvas.y, canvas.u, canvas.v = pic.buffer, pic.y, pic.u, pic.v
        canvas.background = (16, 128, 128)
        return canvas

    def clear(self) -> None:
        self.y[:], self.u[:], self.v[:] = self.background

    def draw(self, pic: Picture, x: int, y: int, opacity: float = 1.0,
             reveal: tuple[int, int, int, int] | None = None) -> None:
        """Draw ``pic`` with its top-left at (x, y) (even), clipped to the canvas and to ``reveal``.

        ``reveal`` (x0, y0, x1, y1, canvas pixels) limits where it shows: a wipe's edge.
        """
        if opacity <= 0:
            return
        pw, ph = pic.size
        x0, y0, x1, y1 = max(0, x), max(0, y), min(self.width, x + pw), min(self.height, y + ph)
        if reveal is not None:
            x0, y0 = max(x0, reveal[0] & ~1), max(y0, reveal[1] & ~1)
            x1, y1 = min(x1, reveal[2] & ~1), min(y1, reveal[3] & ~1)
        if x1 <= x0 or y1 <= y0:
            return
        sx, sy = x0 - x, y0 - y
        src = (slice(sy, sy + y1 - y0), slice(sx, sx + x1 - x0))
        src_c = (slice(sy // 2, (sy + y1 - y0) // 2), slice(sx // 2, (sx + x1 - x0) // 2))
        dst = (slice(y0, y1), slice(x0, x1))
        dst_c = (slice(y0 // 2, y1 // 2), slice(x0 // 2, x1 // 2))
        if pic.alpha is None and opacity >= 1.0:
            self.y[dst] = pic.y[src]
            self.u[dst_c] = pic.u[src_c]
            self.v[dst_c] = pic.v[src_c]
            return
        a = pic.alpha[src] * opacity if pic.alpha is not None else np.float32(opacity)
        ac = pic.alpha_c[src_c] * opacity if pic.alpha_c is not None else np.float32(opacity)
        _blend(self.y[dst], pic.y[src], a)
        _blend(self.u[dst_c], pic.u[src_c], ac)
        _blend(self.v[dst_c], pic.v[src_c], ac)


def _blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray | np.floating) -> None:
    """dst = dst + (src - dst) * alpha, in place, rounded."""
    d = dst.astype(np.float32)
    d += (src.astype(np.float32) - d) * alpha
    np.rint(d, out=d)
    dst[...] = d.astype(np.uint8)
