"""Colour test cards: clips of known colour patches with given tags, and how far a picture is from them.

A card is 4 x 3 flat patches on even pixel boundaries, so 4:2:0 holds them exactly. The Y'CbCr
(or, for HDR, the BT.2100 signal) is computed here from the patch colours with the standard
matrices, and read back the same way, so the reference is the patches themselves: a pipeline
that reads and writes colours right gives them back within coding error. Distances are CIE76 ΔE
(sRGB → Lab, D65).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

#: SDR sRGB/BT.709 patches: saturated primaries, skin, greys (all below SDR white).
PATCHES = np.array([(201, 30, 30), (41, 180, 60), (30, 40, 190), (128, 128, 128),
                    (224, 172, 140), (220, 200, 40), (40, 160, 200), (180, 60, 170),
                    (60, 60, 60), (200, 200, 200), (150, 100, 60), (90, 130, 100)]) / 255.0
KR_KB = {"709": (0.2126, 0.0722), "601": (0.299, 0.114), "2020": (0.2627, 0.0593)}
#: Linear BT.709 RGB → BT.2020 RGB (BT.2087).
BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
#: Source kinds: (file suffix, size).
KINDS = {"bt709": ("mp4", (320, 240)), "sd-untagged": ("mp4", (320, 240)), "hd-untagged": ("mp4", (1280, 720)),
         "full-h264": ("mp4", (320, 240)), "mjpeg": ("mov", (320, 240)), "hlg": ("mp4", (320, 240)),
         "pq": ("mp4", (320, 240))}


def rgb_to_ycc(rgb: np.ndarray, matrix: str, full: bool, bits: int = 8) -> np.ndarray:
    kr, kb = KR_KB[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    s = 2 ** (bits - 8)
    if full:
        top = 2**bits - 1
        return np.stack([y * top, cb * top + 128 * s, cr * top + 128 * s], -1)
    return np.stack([(16 + 219 * y) * s, (128 + 224 * cb) * s, (128 + 224 * cr) * s], -1)


def ycc_to_rgb(ycc: np.ndarray, matrix: str, full: bool) -> np.ndarray:
    kr, kb = KR_KB[matrix]
    if full:
        y, cb, cr = ycc[..., 0] / 255, (ycc[..., 1] - 128) / 255, (ycc[..., 2] - 128) / 255
    else:
        y, cb, cr = (ycc[..., 0] - 16) / 219, (ycc[..., 1] - 128) / 224, (ycc[..., 2] - 128) / 224
    r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    return np.stack([r, (y - kr * r - kb * b) / (1 - kr - kb), b], -1)


def hlg_oetf(e: np.ndarray) -> np.ndarray:
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(e, 0, 1)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)


def pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.clip(nits / 10000, 0, 1) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def sdr_to_hdr(rgb: np.ndarray, transfer: str, white: float = 203.0, peak: float = 1000.0) -> np.ndarray:
    """SDR BT.709 code values → BT.2100 (BT.2020) signal, display-referred as BT.2408 maps them:
    BT.1886 display light, SDR white at HDR reference white (203 cd/m²), HLG for a 1000 cd/m² display."""
    light = (np.clip(rgb, 0, 1) ** 2.4 @ BT709_TO_BT2020.T) * white
    if transfer == "pq":
        return pq_inverse_eotf(light)
    yd = np.maximum(light @ np.array([0.2627, 0.6780, 0.0593]), 1e-9)
    ys = (yd / peak) ** (1 / 1.2)  # undo the HLG OOTF (system gamma 1.2 at 1000 cd/m²)
    return hlg_oetf(light / (peak * ys[..., None] ** 0.2))


def card(width: int, height: int) -> np.ndarray:
    rgb = np.zeros((height, width, 3))
    bw, bh = width // 4, height // 3
    for i, colour in enumerate(PATCHES):
        r, c = divmod(i, 4)
        rgb[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = colour
    return rgb


def make_card_clip(path: str | Path, kind: str, frames: int = 3, rotation: int = 0,
                   size: tuple[int, int] | None = None) -> Path:
    """A clip of the card, encoded as ``kind`` (see :data:`KINDS`) says, tagged as phones and cameras do."""
    path = Path(path)
    w, h = size or KINDS[kind][1]
    rgb = card(w, h)
    bits, pix_fmt, codec, tags = 8, "yuv420p", "libx264", None
    if kind == "bt709":
        ycc, tags = rgb_to_ycc(rgb, "709", False), (1, 1, 1, 1)
    elif kind in ("sd-untagged", "hd-untagged"):  # what the players' rule reads them as
        ycc = rgb_to_ycc(rgb, "601" if w <= 1024 and h <= 576 else "709", False)
    elif kind == "full-h264":  # full-range H.264, as some Android phones write
        ycc, tags = rgb_to_ycc(rgb, "709", True), (1, 1, 1, 2)
    elif kind == "mjpeg":  # JFIF: BT.601, full range
        ycc, pix_fmt, codec = rgb_to_ycc(rgb, "601", True), "yuvj420p", "mjpeg"
    else:  # "hlg" / "pq": 10-bit HEVC, BT.2020
        ycc = rgb_to_ycc(sdr_to_hdr(rgb, kind), "2020", False, 10)
        bits, pix_fmt, codec, tags = 10, "yuv420p10le", "libx265", (9, 18 if kind == "hlg" else 16, 9, 1)
    dtype = np.uint8 if bits == 8 else np.uint16
    planes = [np.round(ycc[..., 0]).astype(dtype), *(np.round(ycc[::2, ::2, i]).astype(dtype) for i in (1, 2))]
    with av.open(str(path), "w", format="mov" if path.suffix == ".mov" else "mp4") as out:
        stream = out.add_stream(codec, rate=30)
        cc = stream.codec_context
        cc.width, cc.height, cc.pix_fmt = w, h, pix_fmt
        if tags:
            cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = tags
        if codec == "mjpeg":
            cc.qscale, cc.global_quality = True, 2 * 118
        else:
            x265 = {"x265-params": "log-level=error:pools=1:frame-threads=1"} if codec == "libx265" else {}
            stream.options = {"crf": "4", "preset": "ultrafast", "threads": "1", **x265}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame(w, h, pix_fmt)
            for plane, values in zip(frame.planes, planes, strict=True):
                buf = np.zeros((plane.height, plane.line_size // values.itemsize), dtype)
                buf[:, :plane.width] = values
                plane.update(buf.tobytes())
            frame.pts, frame.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    rgb = np.clip(rgb, 0, 1)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 ΔE between sRGB colours (0..1)."""
    return np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)


def patch_colours(frame: Any, turn: int = 0) -> np.ndarray:
    """Each patch's mean colour (sRGB 0..1) in a picture of the card: the middle half of each patch,
    Y'CbCr read by the frame's tags, else the players' SD/HD rule. ``turn``: quarter turns
    (``np.rot90``'s ``k``) that bring an upright picture back to the card's orientation."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        rgb = np.rot90(frame.to_ndarray(format="rgb24").astype(float) / 255, k=turn)
        h, w = rgb.shape[:2]

        def mean(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            return rgb[r0:r1, c0:c1].reshape(-1, 3).mean(0)
    else:
        matrix = {1: "709", 5: "601", 6: "601", 9: "2020"}.get(frame.colorspace) \
            or ("601" if frame.width <= 1024 and frame.height <= 576 else "709")
        full = frame.format.name == "yuvj420p" or frame.color_range == 2
        y, u, v = (np.rot90(np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, :p.width].astype(float), k=turn)
                   for p in frame.planes)
        h, w = y.shape

        def mean(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            ycc = [y[r0:r1, c0:c1].mean(), u[r0 // 2:r1 // 2, c0 // 2:c1 // 2].mean(),
                   v[r0 // 2:r1 // 2, c0 // 2:c1 // 2].mean()]
            return ycc_to_rgb(np.array(ycc), matrix, full)
    bw, bh = w / 4, h / 3
    return np.array([mean(int((r + .25) * bh), int((r + .75) * bh), int((c + .25) * bw), int((c + .75) * bw))
                     for r, c in (divmod(i, 4) for i in range(len(PATCHES)))])


def first_frame(path: str | Path) -> Any:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))
