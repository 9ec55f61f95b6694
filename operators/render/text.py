"""Text rasterised with Pillow for titles and captions: fonts, word wrap, RGBA images, placement.

PyAV's FFmpeg has no ``drawtext`` or libass, so the renderer draws text itself: a block of
text becomes one RGBA image (straight alpha) that the compositor lays over the frames where
it shows. A caption track shows few distinct states over and over (the same cue for many
frames, one colouring per spoken word), so :func:`rasterize` is cached on its hashable
inputs and each state is drawn once per process.

Layout works in whole words (:class:`Run`), so a run coloured differently from its
neighbours (a karaoke highlight) sits exactly where it would sit uncoloured: the picture
does not jitter as the highlight moves along the line. A run may also be filled only part
way (karaoke's fill across the word being spoken), sit on a box (``highlight-box``) or be
drawn smaller about its centre (``pop``'s scale-in); none of them moves its neighbours.

Fonts: ``None`` is Pillow's bundled scalable font (Latin only); ``bundled:<name>`` names a
font shipped inside an installed wheel (:data:`BUNDLED_FONTS`: DejaVu Sans from matplotlib,
which also covers Cyrillic and Greek); anything else is a local path of a TTF/OTF file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "BUNDLED_FONTS",
    "POSITIONS",
    "RGBA",
    "Lines",
    "Run",
    "TextStyle",
    "anchor",
    "bundled_font_path",
    "check_font",
    "load_font",
    "local_font_file",
    "rasterize",
    "wrap",
]

RGBA = tuple[int, int, int, int]

#: The 9-way positions :func:`anchor` knows, as (horizontal, vertical) fractions of the free space.
POSITIONS: dict[str, tuple[float, float]] = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
}
_ALIGN = {"left": 0.0, "center": 0.5, "right": 1.0}
# The first bytes of an sfnt file: TrueType (two spellings), OpenType/CFF, and a TrueType collection.
_FONT_MAGIC = (b"\x00\x01\x00\x00", b"true", b"OTTO", b"ttcf")
#: Fonts shipped inside installed wheels, by the name a timeline's ``font`` gives them (``bundled:`` + name in a
#: style): matplotlib's copy of DejaVu Sans covers Latin, Greek and Cyrillic, which Pillow's own font does not.
BUNDLED_FONTS: dict[str, tuple[str, str]] = {
    "dejavu-sans": ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf"),
    "dejavu-sans-bold": ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans-Bold.ttf"),
}
_BUNDLED = "bundled:"


@dataclass(frozen=True, slots=True)
class TextStyle:
    """How a block of text looks; hashable, so it can key :func:`rasterize`'s cache."""

    font: str | None  # local path of a TTF/OTF file; None: Pillow's bundled scalable font
    size: int  # font size in pixels
    color: RGBA
    outline_color: RGBA = (0, 0, 0, 255)
    outline_width: int = 0  # stroke width in px (Pillow's stroke_width)
    background: RGBA | None = None  # a box behind the text, with its alpha
    padding: int = 16  # px between the text and the box's edge
    align: str = "center"  # left | center | right
    max_width: int = 10_000  # wrap lines at this many px
    line_spacing: float = 1.2
    #: px a run's box (:attr:`Run.box`) reaches past its word; the picture always leaves this room round every
    #: word, boxed or not, so a box moving from word to word never changes the picture's size.
    box_padding: int = 0


@dataclass(frozen=True, slots=True)
class Run:
    """A piece of a line drawn in one colour, usually one word."""

    text: str
    color: RGBA | None = None  # None: the style's colour
    fill: float = 1.0  # the share of the run, from its left, drawn in ``color``; the rest in the style's colour
    box: RGBA | None = None  # a box behind the run (``TextStyle.box_padding`` round it)
    scale: float = 1.0  # drawn this much smaller about its centre; 0: not drawn (its room is kept)


#: Lines of runs; the runs on a line are joined by single spaces.
Lines = tuple[tuple[Run, ...], ...]


def bundled_font_path(name: str) -> str:
    """The file of a font in :data:`BUNDLED_FONTS`; raises ``ValueError`` when its wheel is not installed."""
    import importlib.util

    if name not in BUNDLED_FONTS:
        raise ValueError(f"unknown bundled font {name!r}: use one of {', '.join(BUNDLED_FONTS)}")
    package, relative = BUNDLED_FONTS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the bundled font {name!r} comes with the {package} package, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ValueError(f"the bundled font {name!r} is missing from the {package} package ({path})")
    return str(path)


def local_font_file(font: str | None) -> str | None:
    """A style's ``font`` as a file to open: a bundled font's path, a path as it is, None for Pillow's own."""
    if font is not None and font.startswith(_BUNDLED):
        return bundled_font_path(font.removeprefix(_BUNDLED))
    return font


@lru_cache(maxsize=64)
def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """The font at ``path`` (None: Pillow's bundled default; ``bundled:<name>``: one of :data:`BUNDLED_FONTS`) at
    ``size`` px, loaded once per process."""
    if size < 1:
        raise ValueError(f"a font size must be at least 1 px, not {size}")
    path = local_font_file(path)
    if path is None:
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):
            # Pillow built without FreeType falls back to a fixed-size bitmap font.
            raise RuntimeError("Pillow has no FreeType support: the default font cannot be scaled")
        return font
    problem = check_font(path)
    if problem is not None:
        raise ValueError(f"the font file {path!r} cannot be used: {problem}")
    return ImageFont.truetype(path, size)


def check_font(path: str) -> str | None:
    """None if ``path`` is a usable TTF/OTF font, else a short message for a person."""
    file = Path(path)
    if not file.is_file():
        return "the file does not exist"
    try:
        with file.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if magic not in _FONT_MAGIC:
        return "it is not a TrueType or OpenType font"
    try:
        # A valid header over a broken table directory only shows when FreeType lays out glyphs.
        ImageFont.truetype(str(file), 16).getbbox("Ag")
    except (OSError, ValueError) as exc:
        return f"FreeType cannot read it ({exc})"
    return None


def _line_width(text: str, font: ImageFont.FreeTypeFont, style: TextStyle) -> float:
    return font.getlength(text) + 2 * style.outline_width


def _wrap_paragraph(words: list[str], font: ImageFont.FreeTypeFont, style: TextStyle) -> list[tuple[Run, ...]]:
    lines: list[list[str]] = []
    for word in words:
        if lines and _line_width(" ".join([*lines[-1], word]), font, style) <= style.max_width:
            lines[-1].append(word)
        else:
            # A word wider than max_width still gets a line of its own rather than being cut.
            lines.append([word])
    return [tuple(Run(w) for w in line) for line in lines] or [()]


def wrap(text: str, style: TextStyle) -> Lines:
    """``text`` as lines of one-word runs, greedily wrapped at ``style.max_width`` px.

    An explicit newline starts a new line (an empty one stays, as a blank line); blank
    lines at the start and end are dropped.
    """
    font = load_font(style.font, style.size)
    paragraphs = text.strip("\r\n").split("\n") if text.strip() else []
    lines: list[tuple[Run, ...]] = []
    for paragraph in paragraphs:
        lines.extend(_wrap_paragraph(paragraph.split(), font, style))
    return tuple(lines)


def _line_text(line: tuple[Run, ...]) -> str:
    return " ".join(run.text for run in line)


@dataclass(frozen=True, slots=True)
class _Placed:
    """A run at its pen position (left end of its baseline) in layout coordinates."""

    x: float
    y: float
    text: str
    color: RGBA
    width: float  # its advance at full size
    fill: float = 1.0
    box: RGBA | None = None
    scale: float = 1.0


def _layout(lines: Lines, style: TextStyle, font: ImageFont.FreeTypeFont) -> tuple[list[_Placed], tuple[float, ...]]:
    """Every run placed, and the ink's bounds (left, top, right, bottom) including the outline."""
    ascent, descent = font.getmetrics()
    pitch = style.size * style.line_spacing
    widths = [font.getlength(_line_text(line)) for line in lines]
    block = max(widths, default=0.0)
    stroke, pad = style.outline_width, style.box_padding
    placed: list[_Placed] = []
    # Vertical bounds come from the font's metrics, not the ink, so a cue without descenders
    # is as tall as one with them and captions anchored at the bottom keep their baseline.
    bounds = [0.0, -ascent - max(stroke, pad), 0.0, (len(lines) - 1) * pitch + descent + max(stroke, pad)]
    for i, (line, width) in enumerate(zip(lines, widths, strict=True)):
        x0, y = (block - width) * _ALIGN[style.align], i * pitch
        for k, run in enumerate(line):
            # Measure the prefix with its trailing space: the same x whatever the runs' colours.
            x = x0 + (font.getlength(_line_text(line[:k]) + " ") if k else 0.0)
            advance = font.getlength(run.text)
            placed.append(_Placed(x, y, run.text, run.color or style.color, advance, run.fill, run.box, run.scale))
            left, top, right, bottom = font.getbbox(run.text, anchor="ls", stroke_width=stroke)
            left, right = min(left, -pad), max(right, advance + pad)
            bounds = [min(bounds[0], x + left), min(bounds[1], y + top),
                      max(bounds[2], x + right), max(bounds[3], y + bottom)]
    return placed, tuple(bounds)


def _coverage(placed: list[_Placed], size: tuple[int, int], origin: tuple[float, float],
              style: TextStyle, stroke: int) -> np.ndarray:
    """The runs' glyphs (with ``stroke`` px of outline) as a float coverage mask, 0..1."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    font = load_font(style.font, style.size)
    ascent, descent = font.getmetrics()
    for run in placed:
        if run.scale <= 0:
            continue
        x, y, run_font, width = run.x + origin[0], run.y + origin[1], font, stroke
        if run.scale < 1:
            # Smaller about the run's centre: the same middle, left to right and top to bottom.
            run_font = load_font(style.font, max(1, round(style.size * run.scale)))
            x += (run.width - run_font.getlength(run.text)) / 2
            y += (1 - run.scale) * (descent - ascent) / 2
            width = round(stroke * run.scale)
        draw.text((x, y), run.text, fill=255, font=run_font, anchor="ls", stroke_width=width, stroke_fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _box_mask(placed: list[_Placed], size: tuple[int, int], origin: tuple[float, float], style: TextStyle,
              color: RGBA) -> np.ndarray:
    """Rounded boxes behind the runs boxed in ``color``, from the font's ascent to its descent."""
    ascent, descent = load_font(style.font, style.size).getmetrics()
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    pad = style.box_padding
    for run in placed:
        if run.box == color and run.scale > 0:
            x, y = run.x + origin[0], run.y + origin[1]
            draw.rounded_rectangle((x - pad, y - ascent - pad / 2, x + run.width + pad, y + descent + pad / 2),
                                   radius=max(1, pad), fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _fill_masks(placed: list[_Placed], size: tuple[int, int], origin: tuple[float, float],
                style: TextStyle) -> dict[RGBA, np.ndarray]:
    """One coverage mask per fill colour; a run filled part way gives its left part to its colour and the
    rest to the style's colour, cut at ``fill`` of its width."""
    masks: dict[RGBA, np.ndarray] = {}

    def add(color: RGBA, mask: np.ndarray) -> None:
        masks[color] = np.maximum(masks[color], mask) if color in masks else mask

    whole = [r for r in placed if r.fill >= 1 or r.color == style.color]
    for color in dict.fromkeys(r.color for r in whole):
        add(color, _coverage([r for r in whole if r.color == color], size, origin, style, 0))
    for run in (r for r in placed if r.fill < 1 and r.color != style.color):
        mask = _coverage([run], size, origin, style, 0)
        cut = max(0, math.floor(run.x + origin[0] + max(0.0, run.fill) * run.width))
        left = mask.copy()
        left[:, cut:] = 0
        add(run.color, left)
        add(style.color, mask - left)
    return masks


def _over(dst: np.ndarray, color: RGBA, coverage: np.ndarray | float) -> None:
    """Composite ``color`` at ``coverage`` (0..1) over ``dst`` (float RGBA 0..1, straight alpha) in place."""
    src_a = np.asarray(coverage, dtype=np.float32) * (color[3] / 255.0)
    dst_a = dst[..., 3]
    out_a = src_a + dst_a * (1.0 - src_a)
    rgb = np.asarray(color[:3], dtype=np.float32) / 255.0
    weight_dst = (dst_a * (1.0 - src_a))[..., None]
    blended = rgb * np.asarray(src_a)[..., None] + dst[..., :3] * weight_dst
    # Straight alpha: divide the premultiplied sum back out; fully clear pixels stay black.
    dst[..., :3] = np.divide(blended, out_a[..., None], out=np.zeros_like(blended), where=out_a[..., None] > 0)
    dst[..., 3] = out_a


def _even(n: int) -> int:
    return n + (n % 2)


@lru_cache(maxsize=512)
def rasterize(lines: Lines, style: TextStyle) -> np.ndarray:
    """``lines`` drawn in ``style``: an HxWx4 uint8 RGBA array, straight alpha, even H and W.

    The image fits the text and its outline, plus ``style.padding`` all round when there is
    a background box (the box is the whole image), else a clear margin of 2 px. The result
    is cached and shared, so it is read-only: copy it before changing it.
    """
    if style.align not in _ALIGN:
        raise ValueError(f"align must be left, center or right, not {style.align!r}")
    font = load_font(style.font, style.size)
    if not any(run.text for line in lines for run in line):
        return _frozen(np.zeros((2, 2, 4), dtype=np.uint8))
    placed, (left, top, right, bottom) = _layout(lines, style, font)
    margin = style.padding if style.background is not None else 2
    width = _even(math.ceil(right - left) + 2 * margin)
    height = _even(math.ceil(bottom - top) + 2 * margin)
    origin = (margin - left, margin - top)
    size = (width, height)
    canvas = np.zeros((height, width, 4), dtype=np.float32)
    if style.background is not None:
        _over(canvas, style.background, 1.0)
    for box in dict.fromkeys(r.box for r in placed if r.box is not None):
        _over(canvas, box, _box_mask(placed, size, origin, style, box))
    if style.outline_width > 0:
        _over(canvas, style.outline_color, _coverage(placed, size, origin, style, style.outline_width))
    # One coverage mask per colour (usually one or two): the fills go over every outline, so a
    # thick outline of one word never covers the letters of the word beside it.
    for color, mask in _fill_masks(placed, size, origin, style).items():
        _over(canvas, color, mask)
    return _frozen(np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8))


def _frozen(array: np.ndarray) -> np.ndarray:
    # Cached arrays are shared by every caller: a write would corrupt later frames.
    array.flags.writeable = False
    return array


def anchor(size: tuple[int, int], canvas: tuple[int, int], position: str,
           offset: tuple[float, float] = (0.0, 0.0), margin: int = 0) -> tuple[int, int]:
    """The top-left (x, y) of a ``size`` box placed on ``canvas`` at a 9-way ``position``.

    ``margin`` px keep it from the edges it is anchored to; ``offset`` then shifts it by
    fractions of the canvas (x right, y down). Both are rounded down to even numbers, as
    4:2:0 video needs; the box may lie partly outside the canvas (the compositor clips).
    """
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}: use one of {', '.join(POSITIONS)}")
    fx, fy = POSITIONS[position]
    (w, h), (cw, ch) = size, canvas
    x = _place(w, cw, fx, margin) + offset[0] * cw
    y = _place(h, ch, fy, margin) + offset[1] * ch
    return 2 * math.floor(x / 2), 2 * math.floor(y / 2)


def _place(length: int, space: int, fraction: float, margin: int) -> float:
    if fraction == 0.0:
        return float(margin)
    if fraction == 1.0:
        return float(space - length - margin)
    return (space - length) / 2
