"""The values a timeline is made of: rational, frame-exact time, frame rates, colours, gains, positions.

Split from :mod:`operators.render.timeline` (the models), which re-exports the public names.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema

__all__ = ["ASPECT_RATIOS", "Color", "FPS", "Frames", "MAX_CANVAS", "Position", "PositiveTime", "Seconds", "TRANSITIONS", "Time", "Volume", "parse_color", "parse_fps", "to_seconds"]

MAX_CANVAS = 4096
ASPECT_RATIOS = {"9:16": Fraction(9, 16), "1:1": Fraction(1), "4:5": Fraction(4, 5), "16:9": Fraction(16, 9)}
#: libavfilter ``xfade`` transition names this renderer draws.
TRANSITIONS = ("fade", "wipeleft", "wiperight", "wipeup", "wipedown", "slideleft", "slideright", "slideup", "slidedown")
_TIME = re.compile(r"^\s*(-?\d+)\s*f\s*$")
_DB = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*dB\s*$", re.IGNORECASE)


class Frames(int):
    """A time given in frames of the timeline's rate (``"45f"``)."""


def _time(value: Any) -> Fraction | Frames:
    if isinstance(value, Frames | Fraction):
        return value
    if isinstance(value, bool):
        raise ValueError("a time is a number of seconds, a fraction string or frames such as '45f'")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a time must be finite")
        # Floats from JSON are decimal: 1.1 means 11/10, not the binary float's expansion.
        return Fraction(repr(value))
    if isinstance(value, str):
        frames = _TIME.match(value)
        if frames:
            return Frames(int(frames.group(1)))
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError("a time is a number of seconds, a fraction string ('1001/30000') or frames ('45f')")


def _non_negative_time(value: Any) -> Fraction | Frames:
    parsed = _time(value)
    if parsed < 0:
        raise ValueError("a time must not be negative")
    return parsed


_TIME_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^(\d+f|\d+(/\d+)?|\d*\.\d+)$"}],
     "description": "Seconds, an exact fraction of seconds ('1001/30000'), or frames at the timeline's fps ('45f')"}
)
Time = Annotated[Any, PlainValidator(_non_negative_time), _TIME_SCHEMA,
                 PlainSerializer(lambda v: _time_json(v))]


def _positive_time(value: Any) -> Fraction | Frames:
    parsed = _time(value)
    if parsed <= 0:
        raise ValueError("a duration must be above 0")
    return parsed


PositiveTime = Annotated[Any, PlainValidator(_positive_time), _TIME_SCHEMA,
                         PlainSerializer(lambda v: _time_json(v))]


def _time_json(value: Fraction | Frames) -> int | float | str:
    return f"{int(value)}f" if isinstance(value, Frames) else _fraction_json(value)


def _fraction_json(value: Fraction) -> int | float | str:
    if value.denominator == 1:
        return int(value)
    as_float = float(value)
    return as_float if Fraction(repr(as_float)) == value else f"{value.numerator}/{value.denominator}"


def to_seconds(value: Fraction | Frames | None, fps: Fraction) -> Fraction | None:
    """A parsed time in exact seconds (frames counted at ``fps``)."""
    if value is None:
        return None
    return Fraction(int(value)) / fps if isinstance(value, Frames) else Fraction(value)


def parse_fps(value: Any) -> Fraction:
    """``"30000/1001"``, ``30`` or ``29.97`` (read as 30000/1001) as an exact rate."""
    if isinstance(value, bool):
        raise ValueError("fps is a number or a fraction string such as '30000/1001'")
    try:
        rate = Fraction(value) if not isinstance(value, float) else Fraction(repr(value))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError("fps is a number or a fraction string such as '30000/1001'") from None
    # The NTSC rates people write as decimals are the 1001 fractions.
    for ntsc in (24, 30, 60, 120):
        if abs(rate - Fraction(ntsc * 1000, 1001)) < Fraction(1, 100) and rate != ntsc:
            rate = Fraction(ntsc * 1000, 1001)
    if not (Fraction(1) <= rate <= 240):
        raise ValueError("fps must be between 1 and 240")
    if rate.denominator > 1001:
        raise ValueError("fps must be a simple rate such as 25, 30 or 30000/1001")
    return rate


FPS = Annotated[Any, PlainValidator(parse_fps), PlainSerializer(lambda v: f"{v.numerator}/{v.denominator}"),
                WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}], "examples": ["30000/1001", 30]})]


def parse_color(value: Any) -> tuple[int, int, int, int]:
    """A CSS colour (``#rrggbb``, ``#rrggbbaa``, ``white``, ``rgba(0,0,0,0.5)``) as RGBA bytes."""
    from PIL import ImageColor

    if not isinstance(value, str):
        raise ValueError("a colour is a string such as '#ffcc00', '#00000080' or 'white'")
    try:
        rgba = ImageColor.getcolor(value.strip(), "RGBA")
    except ValueError:
        raise ValueError(f"'{value}' is not a colour: use '#rrggbb', '#rrggbbaa' or a CSS name") from None
    return tuple(int(c) for c in rgba)  # type: ignore[return-value]


def _color(value: Any) -> str:
    parse_color(value)
    return value.strip()


Color = Annotated[str, BeforeValidator(_color), WithJsonSchema({"type": "string", "examples": ["#ffffff", "#000000a0"]})]


def _volume(value: Any) -> float:
    if isinstance(value, str):
        match = _DB.match(value)
        if not match:
            raise ValueError("volume is a gain (1.0 is unchanged) or decibels such as '-18dB'")
        return 10 ** (float(match.group(1)) / 20)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("volume is a gain (1.0 is unchanged) or decibels such as '-18dB'")
    return float(value)


Volume = Annotated[float, BeforeValidator(_volume), Field(ge=0, le=16),
                   WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": "dB$"}],
                                   "description": "Linear gain, or decibels ('-18dB')"})]
Position = Literal["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]
Seconds = Annotated[float, Field(ge=0, le=3600)]
