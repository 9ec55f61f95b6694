"""render.text: fonts, word wrap, RGBA rasters and 9-way placement (Pillow only, no video)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import PIL
from operators.render.text import Run, TextStyle, anchor, check_font, load_font, rasterize, wrap

WHITE = (255, 255, 255, 255)
YELLOW = (255, 212, 0, 255)
GREEN = (0, 255, 0, 255)


def _system_font() -> str | None:
    roots = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path(PIL.__file__).parent]
    for root in roots:
        for pattern in ("*.ttf", "*.otf"):
            found = sorted(root.rglob(pattern)) if root.is_dir() else []
            if found:
                return str(found[0])
    return None


def _style(**kw) -> TextStyle:
    return TextStyle(**{"font": None, "size": 40, "color": WHITE, **kw})


def _line(*words: str, colors: dict[int, tuple[int, int, int, int]] | None = None) -> tuple[Run, ...]:
    return tuple(Run(w, (colors or {}).get(i)) for i, w in enumerate(words))


def _pixels_of(img: np.ndarray, color: tuple[int, int, int, int]) -> np.ndarray:
    """(row, col) of the pixels exactly ``color``, opaque."""
    return np.argwhere(np.all(img == np.array(color, dtype=np.uint8), axis=-1))


def test_text_is_opaque_in_its_colour_and_clear_elsewhere():
    red = (220, 20, 20, 255)
    img = rasterize((_line("Hello", "world"),), _style(color=red))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4
    alpha = img[..., 3]
    assert (alpha == 255).sum() > 200, "the glyphs' insides are fully opaque"
    assert (alpha == 0).sum() > (alpha > 0).sum(), "most of the box around the text is clear"
    # Straight alpha: every touched pixel, edge or not, holds the text colour itself.
    assert np.all(img[alpha > 0][:, :3] == red[:3])
    # The 2 px margin around the ink is clear.
    for edge in (img[:2], img[-2:], img[:, :2], img[:, -2:]):
        assert np.all(edge[..., 3] == 0)


@pytest.mark.parametrize("text", ["I", "Hi", "Hello, world", "gypsy jQ", "a\nbb\nccc"])
@pytest.mark.parametrize("size", [13, 40, 57])
def test_dimensions_are_even(text, size):
    boxed = _style(size=size, background=(0, 0, 0, 128), padding=7)
    for style in (_style(size=size), _style(size=size, outline_width=3), boxed):
        img = rasterize(wrap(text, style), style)
        assert img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0, (text, size, style)


def test_highlighted_run_is_drawn_in_its_colour_where_the_word_is():
    style = _style()
    first = rasterize((_line("left", "right", colors={0: YELLOW}),), style)
    last = rasterize((_line("left", "right", colors={1: YELLOW}),), style)
    for img, yellow_side in ((first, "left"), (last, "right")):
        yellow, white = _pixels_of(img, YELLOW)[:, 1], _pixels_of(img, WHITE)[:, 1]
        assert len(yellow) > 50 and len(white) > 50
        if yellow_side == "left":
            assert yellow.max() < white.min()
        else:
            assert white.max() < yellow.min()
    # Colouring a word moves nothing: the same pixels are covered either way.
    assert first.shape == last.shape
    assert np.array_equal(first[..., 3], last[..., 3])


def test_outline_is_drawn_in_its_colour():
    plain = rasterize((_line("Outline"),), _style(outline_color=GREEN))
    outlined = rasterize((_line("Outline"),), _style(outline_color=GREEN, outline_width=3))
    assert len(_pixels_of(plain, GREEN)) == 0
    assert len(_pixels_of(outlined, GREEN)) > 100
    assert len(_pixels_of(outlined, WHITE)) > 100, "the fill stays on top of the outline"
    # The outline widens the picture by its width on each side.
    assert outlined.shape[1] >= plain.shape[1] + 2 * 3 - 1


def test_background_box_fills_its_padding():
    box = (0, 0, 200, 128)
    img = rasterize((_line("Boxed"),), _style(background=box, padding=20))
    bare = rasterize((_line("Boxed"),), _style())
    for strip in (img[:20], img[-20:], img[:, :20], img[:, -20:]):
        assert np.all(strip == np.array(box, dtype=np.uint8))
    assert np.all(img[..., 3] >= 128), "the box is behind every pixel"
    assert len(_pixels_of(img, WHITE)) > 100, "opaque text over the box is the text colour"
    # Padding replaces the 2 px clear margin on each side (plus at most 1 px to make it even).
    assert abs((img.shape[1] - bare.shape[1]) - 2 * (20 - 2)) <= 1


def test_alignment_moves_the_short_line():
    lines = (_line("a", "much", "longer", "line"), _line("short"))

    def short_line_columns(align: str) -> np.ndarray:
        img = rasterize(lines, _style(align=align))
        bottom = img[img.shape[0] * 2 // 3 :]
        return np.argwhere(bottom[..., 3] > 0)[:, 1]

    width = rasterize(lines, _style()).shape[1]
    left, center, right = (short_line_columns(a) for a in ("left", "center", "right"))
    assert left.min() < 10 and right.max() > width - 10
    assert left.max() < center.max() < right.max()
    assert abs((center.min() + center.max()) / 2 - width / 2) < 6
    with pytest.raises(ValueError, match="align"):
        rasterize(lines, _style(align="middle"))


def test_rasterize_is_cached_and_read_only():
    style = _style(outline_width=2)
    lines = wrap("cached title", style)
    img = rasterize(lines, style)
    assert rasterize(wrap("cached title", style), style) is img
    with pytest.raises(ValueError):
        img[0, 0, 0] = 1
    assert rasterize((), style).shape == (2, 2, 4)


def test_styles_and_lines_pickle():
    style = _style(background=(1, 2, 3, 4))
    lines = (_line("a", "b", colors={1: YELLOW}),)
    assert pickle.loads(pickle.dumps(style)) == style
    assert pickle.loads(pickle.dumps(lines)) == lines
    assert hash(style) == hash(pickle.loads(pickle.dumps(style)))


def test_wrap_breaks_lines_by_width():
    style = _style(max_width=300)
    font = load_font(None, 40)
    text = "the quick brown fox jumps over the lazy dog and keeps on running far away"
    lines = wrap(text, style)
    assert len(lines) > 2
    assert [r.text for line in lines for r in line] == text.split()
    for i, line in enumerate(lines):
        joined = " ".join(r.text for r in line)
        assert font.getlength(joined) <= 300
        if i + 1 < len(lines):  # greedy: the next line's first word would not have fitted
            assert font.getlength(joined + " " + lines[i + 1][0].text) > 300
    assert all(r.color is None for line in lines for r in line)
    assert len(wrap(text, _style())) == 1, "a wide max_width keeps one line"


def test_wrap_newlines_and_long_words():
    style = _style(max_width=200)
    lines = wrap("one\ntwo  three", style)
    assert [[r.text for r in line] for line in lines] == [["one"], ["two", "three"]]
    long = wrap("a supercalifragilisticexpialidocious word", style)
    assert [[r.text for r in line] for line in long] == [["a"], ["supercalifragilisticexpialidocious"], ["word"]]
    assert wrap("  \n ", style) == ()


CANVAS = (1920, 1080)
BOX = (100, 50)


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ("top-left", (0, 0)), ("top", (910, 0)), ("top-right", (1820, 0)),
        ("left", (0, 514)), ("center", (910, 514)), ("right", (1820, 514)),
        ("bottom-left", (0, 1030)), ("bottom", (910, 1030)), ("bottom-right", (1820, 1030)),
    ],
)
def test_anchor_nine_positions(position, expected):
    # center's y is (1080 - 50) / 2 = 515, rounded down to even.
    assert anchor(BOX, CANVAS, position) == expected


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ("top-left", (40, 40)), ("top", (910, 40)), ("top-right", (1780, 40)),
        ("left", (40, 514)), ("center", (910, 514)), ("right", (1780, 514)),
        ("bottom-left", (40, 990)), ("bottom", (910, 990)), ("bottom-right", (1780, 990)),
    ],
)
def test_anchor_margin_applies_to_anchored_edges_only(position, expected):
    assert anchor(BOX, CANVAS, position, margin=40) == expected


def test_anchor_offsets_and_even_rounding():
    assert anchor(BOX, CANVAS, "center", offset=(0.1, -0.25)) == (1102, 244)  # 910+192, 515-270
    assert anchor(BOX, CANVAS, "top-left", offset=(-0.001, 0.0)) == (-2, 0)  # -1.92 rounds down to -2
    assert anchor((101, 51), (1001, 1001), "bottom-right", margin=3) == (896, 946)  # 897, 947 -> even
    x, y = anchor((3000, 50), CANVAS, "center")
    assert x < 0 and x % 2 == 0, "a box wider than the canvas may start left of it"
    with pytest.raises(ValueError, match="position"):
        anchor(BOX, CANVAS, "middle")


def test_check_font_accepts_a_real_font_and_rejects_others(tmp_path):
    not_font = tmp_path / "notes.ttf"
    not_font.write_text("this is not a font\n")
    assert check_font(str(not_font)) == "it is not a TrueType or OpenType font"
    assert check_font(str(tmp_path / "missing.ttf")) == "the file does not exist"
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"\x00\x01\x00\x00" + b"\xff" * 60)
    assert check_font(str(broken)) is not None
    with pytest.raises(ValueError, match="not a TrueType"):
        load_font(str(not_font), 20)

    real = _system_font()
    if real is None:
        pytest.skip("no TTF/OTF font on this machine to accept")
    assert check_font(real) is None
    style = _style(font=real, size=30)
    img = rasterize(wrap("Real font", style), style)
    assert len(_pixels_of(img, WHITE)) > 50
