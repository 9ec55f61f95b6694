"""Caption style presets, platform safe areas and brand defaults: defaults for the fields a timeline left out.

A preset is the caption track's own fields with other defaults. Precedence, highest first: what the timeline
sets, then the brand kit's fonts and colours (:class:`Brand`), then the preset, then the field's own default.
"What the timeline sets" is pydantic's ``model_fields_set``; a stored timeline keeps it, because caption tracks
and text clips serialise only the fields that were set (see ``operators.render.timeline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BUNDLED_FONT_NAMES", "Brand", "PRESETS", "SAFE_AREAS", "brand_caption_update", "brand_text_update",
           "preset_update", "safe_rect"]

#: Fonts a timeline may name without an asset (``operators.render.text.BUNDLED_FONTS``).
BUNDLED_FONT_NAMES = ("dejavu-sans", "dejavu-sans-bold")

#: Each named style's defaults. The three original styles keep the fields' own defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "lines": {},
    "word-highlight": {},
    "word-pop": {},
    # Words fill with the highlight colour left to right as they are spoken.
    "karaoke": {"highlight_color": "#ffd400", "outline_width": 4, "font": "dejavu-sans-bold"},
    # A box in the highlight colour behind the word being spoken.
    "highlight-box": {"highlight_color": "#7c3aed", "outline_width": 0, "font": "dejavu-sans-bold"},
    # One or two words at a time, each scaling in as it is spoken.
    "pop": {"words_per_pop": 2, "size": 72, "outline_width": 5, "font": "dejavu-sans-bold", "max_chars": 24},
    # Capitals, a thick outline, the line's keyword in the accent colour.
    "bold-upper": {"uppercase": True, "outline_width": 7, "font": "dejavu-sans-bold", "emphasize_keywords": True,
                   "accent_color": "#ffd400", "size": 64, "max_chars": 28},
    # Small plain text on a translucent box, one line.
    "minimal": {"size": 40, "outline_width": 0, "background": "#000000a0", "max_lines": 1, "max_chars": 48},
}

#: The parts of a 9:16 frame each app covers with its interface, as fractions of the canvas (top, right, bottom,
#: left): captions are kept inside the rest. From the apps' own layouts at 1080x1920 and the creator guides that
#: measure them: TikTok's caption, sound and profile text take the bottom ~20 % (about 380 px of 1920) and its
#: like/comment/share column ~12 % of the width on the right (~130 px), its tabs the top ~10 % (~190 px);
#: Instagram Reels' caption and audio rows reach higher (bottom ~25 %, ~480 px) with a similar button column
#: (~12 %) and top bar (~10 %); YouTube Shorts' title, channel row and subscribe button take the bottom ~22 %
#: (~420 px) and its buttons ~15 % on the right (~160 px), its top bar ~10 %. A small left margin (5 %) keeps
#: the text off the screen's edge.
SAFE_AREAS: dict[str, tuple[float, float, float, float]] = {
    "tiktok": (0.10, 0.12, 0.20, 0.05),
    "reels": (0.10, 0.12, 0.25, 0.05),
    "shorts": (0.10, 0.15, 0.22, 0.05),
    "none": (0.0, 0.0, 0.0, 0.0),
}


@dataclass(frozen=True, slots=True)
class Brand:
    """A brand kit's defaults for a timeline's captions and titles: a font asset and ``#RRGGBB`` colours."""

    id: str
    font: str | None = None
    primary: str | None = None
    accent: str | None = None
    text: str | None = None
    background: str | None = None


def _unset(model: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The ``values`` for fields ``model`` was not given (and that are not None)."""
    return {k: v for k, v in values.items() if v is not None and k not in model.model_fields_set}


def preset_update(track: Any) -> dict[str, Any]:
    """The preset's defaults for the fields the caption track left out (a ``model_copy`` update)."""
    return _unset(track, PRESETS.get(track.style, {}))


def brand_caption_update(track: Any, brand: Brand) -> dict[str, Any]:
    """A brand kit's font and colours for the fields the caption track left out: its text colour, its accent
    for the highlight and keywords (its primary colour for ``highlight-box``'s box), its background for the
    styles that draw a box behind the text."""
    highlight = brand.primary if track.style == "highlight-box" else brand.accent
    values = {"font": brand.font, "color": brand.text, "accent_color": brand.accent, "highlight_color": highlight}
    if PRESETS.get(track.style, {}).get("background") or "background" in track.model_fields_set:
        values["background"] = brand.background
    return _unset(track, values)


def brand_text_update(clip: Any, brand: Brand) -> dict[str, Any]:
    """A brand kit's font and text colour for the fields a text clip left out."""
    return _unset(clip, {"font": brand.font, "color": brand.text})


def safe_rect(name: str, width: int, height: int) -> tuple[int, int, int, int]:
    """The part of a ``width`` x ``height`` canvas clear of an app's interface: (x, y, w, h), even numbers."""
    top, right, bottom, left = SAFE_AREAS[name]
    x0, y0 = 2 * round(width * left / 2), 2 * round(height * top / 2)
    x1, y1 = width - 2 * round(width * right / 2), height - 2 * round(height * bottom / 2)
    return x0, y0, x1 - x0, y1 - y0
