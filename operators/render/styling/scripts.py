"""Which writing systems a text uses, and whether a font can draw them, so captions never show boxes.

Scripts are told by Unicode ranges. A font file's coverage is its character map (fontTools); Pillow's own
font, which has no file, is probed by drawing: a character it lacks draws the same ``.notdef`` box as a
private-use character. :func:`pick_font` is the rule the renderer follows: a font the timeline names must
cover the text; Pillow's default font (Latin only) gives way to the bundled DejaVu Sans for Greek and
Cyrillic; anything neither covers (CJK, Arabic, ...) needs a font that does, and is refused without one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["FALLBACK_FONT", "missing_characters", "pick_font", "script_of", "scripts_of"]

#: What Pillow's default font gives way to for scripts it lacks (``operators.render.text.BUNDLED_FONTS``).
FALLBACK_FONT = "bundled:dejavu-sans"

#: The scripts the bundled fonts draw; any other needs a font given for it (brand kit or font asset).
_FALLBACK_SCRIPTS = {"Latin", "Greek", "Cyrillic"}

_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "Latin"), (0x1E00, 0x1EFF, "Latin"), (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"), (0x0530, 0x058F, "Armenian"), (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0x08A0, 0x08FF, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"), (0x0900, 0x097F, "Devanagari"),
    (0x0980, 0x09FF, "Bengali"), (0x0E00, 0x0E7F, "Thai"), (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul (CJK)"), (0x3040, 0x309F, "Hiragana (CJK)"), (0x30A0, 0x30FF, "Katakana (CJK)"),
    (0x3100, 0x312F, "Bopomofo (CJK)"), (0x3130, 0x318F, "Hangul (CJK)"), (0x3400, 0x4DBF, "Han (CJK)"),
    (0x4E00, 0x9FFF, "Han (CJK)"), (0xAC00, 0xD7AF, "Hangul (CJK)"), (0xF900, 0xFAFF, "Han (CJK)"),
    (0x20000, 0x2FA1F, "Han (CJK)"),
)


def script_of(char: str) -> str | None:
    """The script of a letter (None for spaces, digits, punctuation and symbols, which every script shares)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    code = ord(char)
    for low, high, name in _RANGES:
        if low <= code <= high:
            return name
    return "Other"


def scripts_of(text: str) -> dict[str, str]:
    """Each script ``text`` uses, with up to 8 of its characters as an example."""
    found: dict[str, str] = {}
    for char in dict.fromkeys(text):
        name = script_of(char)
        if name is not None and len(found.get(name, "")) < 8:
            found[name] = found.get(name, "") + char
    return found


def _drawable(text: str) -> list[str]:
    """The distinct characters a font must have glyphs for (not spaces or control characters)."""
    return [c for c in dict.fromkeys(text) if not c.isspace() and unicodedata.category(c)[0] not in "CZ"]


@lru_cache(maxsize=32)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap() or {})


@lru_cache(maxsize=4096)
def _pillow_default_has(char: str) -> bool:
    from PIL import ImageFont

    font = ImageFont.load_default(size=24)
    return bytes(font.getmask(char)) != bytes(font.getmask("\ue000")) or font.getmask(char).size != \
        font.getmask("\ue000").size


def missing_characters(font_file: str | None, text: str) -> list[str]:
    """The characters of ``text`` the font cannot draw (``font_file`` None: Pillow's default font)."""
    chars = _drawable(text)
    if font_file is None:
        return [c for c in chars if not _pillow_default_has(c)]
    cmap = _cmap(font_file)
    return [c for c in chars if ord(c) not in cmap]


def _describe(chars: Iterable[str]) -> str:
    scripts = scripts_of("".join(chars))
    if not scripts:
        return "characters " + " ".join(repr(c) for c in list(chars)[:8])
    return ", ".join(f"{name} script (e.g. {sample[:4]!r})" for name, sample in scripts.items())


def pick_font(font: str | None, font_file: str | None, text: str, *, fallback_file: str | None,
              language: str | None = None, font_name: str = "") -> tuple[str | None, str | None]:
    """The font to draw ``text`` with, and a problem for a person (None when there is none).

    ``font`` is the style's font (None: Pillow's default) and ``font_file`` its file on this machine;
    ``fallback_file`` the file of :data:`FALLBACK_FONT` (None when its package is missing).
    """
    missing = missing_characters(font_file, text)
    if not missing:
        return font, None
    said = f" (language {language!r})" if language else ""
    if font is not None:
        return font, (f"the text{said} is in {_describe(missing)}, which the font {font_name or font} does not "
                      "cover: give a font that does")
    if fallback_file is not None and set(scripts_of("".join(missing))) <= _FALLBACK_SCRIPTS \
            and not missing_characters(fallback_file, "".join(missing)):
        return FALLBACK_FONT, None
    return None, (f"the text{said} is in {_describe(missing)}, which the bundled fonts cannot draw: give a font "
                  "that covers it (a TTF/OTF font asset as the font, or a brand kit whose font does)")
