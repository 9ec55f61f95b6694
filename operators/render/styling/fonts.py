"""The font a caption track or title is drawn with, and whether it can draw its words (checked at submission).

A style's font is ``None`` (Pillow's default), ``bundled:<name>`` or a storage path of a font asset. At
submission the scheduler passes its storage, so the words of each caption track's transcript (and each
title's text) are checked against the font that will draw them: a script no font covers is a 422 naming it,
never boxes in the video. At render time the same rule picks the fallback (:func:`drawing_font`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from operators.render.styling.presets import BUNDLED_FONT_NAMES
from operators.render.styling.scripts import pick_font
from operators.render.text import local_font_file

__all__ = ["drawing_font", "font_file", "style_font", "text_problem", "transcript_text"]


def style_font(font: str, asset_path: str | None) -> str | None:
    """A timeline ``font`` as a style's font: None (default), ``bundled:<name>``, or the asset's path."""
    if font == "default":
        return None
    if font in BUNDLED_FONT_NAMES:
        return f"bundled:{font}"
    return asset_path


@contextmanager
def font_file(storage: Any, font: str | None) -> Iterator[str | None]:
    """A style's font as a file on this machine while the block runs (None: Pillow's default)."""
    if font is None or font.startswith("bundled:"):
        with nullcontext(local_font_file(font)) as path:
            yield path
        return
    with storage.reading(font) as local:
        yield str(local)


def _fallback() -> str | None:
    try:
        return local_font_file("bundled:dejavu-sans")
    except ValueError:
        return None


def text_problem(storage: Any, font: str | None, text: str, *, language: str | None = None,
                 font_name: str = "") -> str | None:
    """Why ``text`` cannot be drawn with ``font`` (or the fallback for Pillow's default), or None."""
    with font_file(storage, font) as path:
        return pick_font(font, path, text, fallback_file=_fallback(), language=language, font_name=font_name)[1]


def drawing_font(font: str | None, text: str) -> str | None:
    """The font that draws ``text``: a given one as it is; Pillow's default, or the bundled fallback for the
    Greek and Cyrillic it lacks (a script neither covers was refused at submission)."""
    if font is not None:
        return font
    return pick_font(None, None, text, fallback_file=_fallback())[0]


def transcript_text(storage: Any, path: str) -> tuple[str, str | None]:
    """A transcript asset's words as one string, and its language."""
    from operators.speech.models import Transcript

    with storage.reading(path) as local:
        transcript = Transcript.model_validate_json(local.read_bytes())
    return " ".join(w.word for w in transcript.words), transcript.language
