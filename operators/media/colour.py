"""Colour management: every picture we write is BT.709, limited range, SDR, whatever the source was.

A source says how its pixels are to be read with four tags (matrix, range, primaries, transfer);
most phone and camera footage is tagged, much of the rest is not. :func:`colour_of` reads them from
a decoded frame and fills the gaps the way players do: an untagged picture up to 1024x576 is
BT.601 (SD), a bigger one BT.709 (HD); untagged YUV is limited range unless its pixel format is a
``yuvj`` one (MJPEG). The conversion then runs in the libavfilter graph the operator already runs
(:func:`colour_filters`): every ``scale`` is told the source's matrix and range and the output's,
because a ``scale`` left to the links' tags read an untagged link as BT.601, and PyAV's buffer
sources tag none (issue 19: BT.709 sources rendered with BT.601 maths).

HDR (HLG, PQ) and wide-gamut sources are converted to SDR BT.709 with a 3D LUT
(:mod:`operators.media.tonemap`: highlights are rolled off, not clipped) between two ``scale``
filters that only change matrix, range and size.

The one exception is a rendition that asks to keep HDR (``keep_hdr``: the ``hevc-1080p-hdr``
preset): an HDR source then keeps its primaries and transfer, in BT.2020 matrix, limited range
(:func:`output_for`), and only its size (and maybe matrix and range) changes; an SDR source is
still written as :data:`OUTPUT`, since tagging SDR light as HDR would only fake it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.filter

from operators.media.tonemap import WIDE_PRIMARIES, lut_file

__all__ = ["Colour", "ColourScaler", "OUTPUT", "add_source", "build_graph", "colour_filters", "colour_of",
           "managed_chain", "output_for", "tag_output"]

#: AVColorSpace values → the matrix names ``scale`` takes.
_MATRICES = {1: "bt709", 4: "fcc", 5: "bt470", 6: "smpte170m", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
#: AVColorPrimaries and AVColorTransferCharacteristic values → their FFmpeg names.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020",
              11: "smpte431", 12: "smpte432"}
_TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")


@dataclass(frozen=True, slots=True)
class Colour:
    """How a picture's pixels are to be read, in FFmpeg's names (tags and the players' defaults)."""

    matrix: str
    full_range: bool
    primaries: str
    transfer: str
    #: The brightest light the source is taken to hold, cd/m² (HDR only).
    peak_nits: float = 0.0

    @property
    def hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    @property
    def is_output(self) -> bool:
        """Already what we write: a YUV picture needs no colour conversion, only maybe a scale."""
        return self == OUTPUT


OUTPUT = Colour("bt709", False, "bt709", "bt709")
#: FFmpeg's names → the AVColor* values an encoder is tagged with (the first value of each name wins).
_MATRIX_CODES = {name: code for code, name in reversed(_MATRICES.items())}
_PRIMARIES_CODES = {name: code for code, name in _PRIMARIES.items()}
_TRANSFER_CODES = {name: code for code, name in _TRANSFERS.items()}


def output_for(src: Colour, keep_hdr: bool = False) -> Colour:
    """The colours a picture read as ``src`` is written in: :data:`OUTPUT`, or with ``keep_hdr``
    an HDR source's own primaries and transfer (BT.2020 non-constant-luminance matrix, limited range)."""
    if not (keep_hdr and src.hdr):
        return OUTPUT
    return Colour("bt2020", False, src.primaries, src.transfer, src.peak_nits)


def colour_of(frame: Any) -> Colour:
    """A decoded frame's colours: its tags, with the players' rule for what is not tagged."""
    fmt = frame.format.name
    rgb = fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "gray"))
    sd = frame.width <= 1024 and frame.height <= 576
    transfer = _TRANSFERS.get(frame.color_trc, "bt709")
    hdr = transfer in HDR_TRANSFERS
    matrix = _MATRICES.get(frame.colorspace) or ("bt2020" if hdr else "bt470" if sd else "bt709")
    primaries = _PRIMARIES.get(frame.color_primaries) or ("bt2020" if hdr or matrix == "bt2020" else "bt709")
    full = rgb or fmt.startswith("yuvj") or frame.color_range == 2
    if hdr and primaries not in WIDE_PRIMARIES:
        primaries = "bt2020"  # what HDR is made in; BT.709-tagged HDR is all but unheard of
    elif not hdr and primaries not in WIDE_PRIMARIES:
        # Not converted (see WIDE_PRIMARIES): read as BT.709 light, as players show it.
        primaries, transfer = "bt709", "bt709"
    if rgb:
        matrix = "bt709"  # no matrix: the name only keeps OUTPUT comparisons simple
    # HLG: BT.2100's nominal display. PQ: the usual mastering peak. Not the stream's MaxCLL: its
    # SEI may be on some frames only, and a peak that changed between chunks would change the
    # picture between them.
    return Colour(matrix, full, primaries, transfer, 1000.0 if hdr else 0.0)


def _flags(interpolation: str) -> str:
    """swscale's name for an interpolation (``"BICUBIC"`` → ``"bicubic"``)."""
    return interpolation.lower()


def colour_filters(src: Colour, size: tuple[int, int] | None, out_format: str = "yuv420p",
                   interpolation: str = "bicubic", keep_hdr: bool = False) -> list[tuple[str, str]]:
    """The filters that scale a picture read as ``src`` to ``size`` (None: as it is) in ``OUTPUT``
    (or, with ``keep_hdr``, in :func:`output_for`'s colours).

    YUV out is limited range, RGB out full range. Every ``scale`` names both sides' colours, so
    nothing is left to what a link happens to be tagged with.
    """
    dims = f"{size[0]}:{size[1]}:" if size is not None else ""
    flags = f"flags={_flags(interpolation)}"
    read = f"in_color_matrix={src.matrix}:in_range={'pc' if src.full_range else 'tv'}"
    write = f"out_color_matrix=bt709:out_range={'tv' if out_format.startswith('yuv') else 'pc'}"
    # Transfer and primaries are named the same on both sides, so swscale leaves the light alone:
    # its own conversion builds tables for 1-5 s per graph (media.tonemap says more), and it
    # refuses some tags it cannot convert.
    keep = (f"in_primaries={src.primaries}:out_primaries={src.primaries}"
            f":in_transfer={src.transfer}:out_transfer={src.transfer}")
    target = output_for(src, keep_hdr)
    if target.hdr:
        # HDR kept: the same light, only the matrix (to BT.2020) and range may change.
        out = f"out_color_matrix={target.matrix}:out_range={'tv' if out_format.startswith('yuv') else 'pc'}"
        return [("scale", f"{dims}{flags}:{read}:{out}:{keep}"), ("format", out_format)]
    if not src.hdr and src.primaries not in WIDE_PRIMARIES:
        # A matrix or range change costs swscale 1-3 ms a 1080p frame and ~1 ΔE of rounding
        # (max 1.2-1.7 on the test card). accurate_rnd+full_chroma_int halves the ΔE but costs
        # 2-6x as much (16 ms for a 1080p MJPEG frame): not worth it.
        return [("scale", f"{dims}{flags}:{read}:{write}:{keep}"), ("format", out_format)]
    # The source's RGB signal, scaled, in 16 bits → the LUT → the output's matrix and range.
    lut = lut_file(src.transfer, src.primaries, src.peak_nits)
    return [("scale", f"{dims}{flags}:{read}:out_range=pc:{keep}"), ("format", "gbrp16le"),
            ("lut3d", f"file={lut}:interp=tetrahedral"),
            ("setparams", "range=pc:color_primaries=bt709:color_trc=bt709:colorspace=gbr"),
            ("scale", f"{flags}:in_range=pc:{write}"), ("format", out_format)]


def managed_chain(chain: str, src: Colour, out_format: str = "yuv420p",
                  keep_hdr: bool = False) -> list[tuple[str, str]]:
    """A comma-separated filter chain with its first ``scale`` colour-managed (see :func:`colour_filters`).

    Later ``scale`` filters see output colours already and are told so. A chain without a
    ``scale`` gets the conversion at its end.
    """
    parts = [(name, args) for name, _, args in (p.partition("=") for p in chain.split(",") if p)]
    out: list[tuple[str, str]] = []
    done = False
    matrix = output_for(src, keep_hdr).matrix
    for name, args in parts:
        if name != "scale":
            out.append((name, args))
        elif not done:
            size_args = [a for a in args.split(":") if "=" not in a][:2]
            size = (int(size_args[0]), int(size_args[1])) if len(size_args) == 2 else None
            flags = next((a.split("=", 1)[1] for a in args.split(":") if a.startswith("flags=")), "bicubic")
            out.extend(colour_filters(src, size, out_format, flags, keep_hdr))
            done = True
        else:
            out.append(("scale", f"{args}:in_color_matrix={matrix}:in_range=tv:out_color_matrix={matrix}:out_range=tv"))
    if not done:
        out.extend(colour_filters(src, None, out_format, keep_hdr=keep_hdr))
    return out


def add_source(graph: Any, width: int, height: int, format: str, time_base: Fraction | None,
               colorspace: int = 1, color_range: int = 1) -> Any:
    """A ``buffer`` source that states its frames' matrix and range (BT.709 limited unless told).

    PyAV's ``add_buffer`` leaves them out, and then the links say "unspecified", which the
    ``scale`` filters libavfilter inserts by itself (before ``paletteuse``, say) read as BT.601.
    """
    return graph.add("buffer", video_size=f"{width}x{height}", pix_fmt=format,
                     time_base=str(time_base or Fraction(1, 1000)), pixel_aspect="1/1",
                     colorspace=str(int(colorspace)), range=str(int(color_range)))


def build_graph(frame: Any, filters: Sequence[tuple[str, str]], threads: int | None = 1) -> tuple[Any, Any, Any]:
    """A configured one-input graph running ``filters`` on frames like ``frame``: (graph, source, sink).

    ``threads``: 1 by default, as the workers already keep every core busy with chunks and
    segments; None leaves libavfilter's own choice.
    """
    graph = av.filter.Graph()
    if threads is not None:
        graph.threads = threads
    source = add_source(graph, frame.width, frame.height, frame.format.name, frame.time_base, frame.colorspace,
                        frame.color_range)
    node = source
    for name, args in filters:
        nxt = graph.add(name, args or None)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    return graph, source, sink


class ColourScaler:
    """Scale to ``width`` x ``height`` in ``format`` and convert to :data:`OUTPUT` colours
    (``keep_hdr``: :func:`output_for`'s).

    One graph per source picture shape, kept for the frames that follow. A frame already in the
    output's size, format and colours is passed through untouched.
    """

    def __init__(self, width: int, height: int, format: str = "yuv420p", interpolation: str = "BICUBIC",
                 threads: int = 1, keep_hdr: bool = False) -> None:
        self.width, self.height, self.format = width, height, format
        self.interpolation, self.threads, self.keep_hdr = interpolation, threads, keep_hdr
        self._key: tuple[Any, ...] | None = None
        self._graph: tuple[Any, Any, Any] | None = None

    def __call__(self, frame: Any) -> Any:
        colour = colour_of(frame)
        if (frame.width, frame.height, frame.format.name) == (self.width, self.height, self.format) \
                and self.format.startswith("yuv") and colour == output_for(colour, self.keep_hdr):
            return frame
        key = (frame.width, frame.height, frame.format.name, colour)
        if key != self._key or self._graph is None:
            filters = colour_filters(colour, (self.width, self.height), self.format, self.interpolation,
                                     self.keep_hdr)
            self._graph, self._key = build_graph(frame, filters, self.threads), key
        _, source, sink = self._graph
        source.push(frame)
        out = sink.pull()
        out.pts = frame.pts
        if frame.time_base is not None:
            out.time_base = frame.time_base
        return out


def tag_output(codec_context: Any, colour: Colour = OUTPUT) -> None:
    """Tag an encoder's stream as what :class:`ColourScaler` writes: BT.709 (or ``colour``), limited range."""
    codec_context.color_primaries = _PRIMARIES_CODES[colour.primaries]
    codec_context.color_trc = _TRANSFER_CODES[colour.transfer]
    codec_context.colorspace = _MATRIX_CODES[colour.matrix]
    codec_context.color_range = 1
