"""OpenTimelineIO, with the Final Cut Pro X adapter made frame-exact.

``otio-fcpx-xml-adapter`` 1.0 reads a format's rate as an integer (29.97 fps becomes 29) and
turns times into frames with ``int()`` of a float product (12.012 s x 29.97 gives 359.99999 ->
359); its writer finds frame durations in a table of decimal rates (30000/1001 is not in it) and
asks ``ffprobe`` (a subprocess) for a format name whenever the media path exists locally. This
module replaces those four functions with exact rational arithmetic, and no subprocess, before
any timeline is written or read. Nothing else of the adapter changes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

__all__ = ["exact_rate", "load"]

_PATCHED = False


def exact_rate(rate: float | int) -> Fraction:
    """A rate OTIO holds as a float, as the fraction it stands for (29.97002997 -> 30000/1001)."""
    return Fraction(rate).limit_denominator(1001)


def _seconds(text: str | None) -> Fraction:
    """An FCPXML time (``"3003/250s"``, ``"12s"``, ``"0s"``) as exact seconds."""
    if not text or text == "0s":
        return Fraction(0)
    return Fraction(text.rstrip("s"))


def _fcpx_time(value: float, rate: float) -> str:
    seconds = Fraction(round(value)) / exact_rate(rate)
    if seconds == 0:
        return "0s"
    return f"{seconds.numerator}s" if seconds.denominator == 1 else f"{seconds.numerator}/{seconds.denominator}s"


def _patch_fcpx() -> None:
    import opentimelineio as otio

    try:
        # OTIO loads an adapter's file as its own module (not the package's): patch that one.
        fx = otio.adapters.from_name("fcpx_xml").module()
    except Exception:  # noqa: BLE001  (the adapter is not installed: fcpxml is then unavailable anyway)
        return

    def to_rational_time(rational_number: str | None, fps: float) -> Any:
        return otio.opentime.RationalTime(round(_seconds(rational_number) * exact_rate(fps)), float(exact_rate(fps)))

    def from_rational_time(rational_time: Any) -> str:
        return _fcpx_time(rational_time.value, rational_time.rate)

    def framerate_to_frame_duration(framerate: float) -> str:
        duration = 1 / exact_rate(framerate)
        return f"{duration.numerator}/{duration.denominator}s"

    def format_frame_rate(self: Any, format_id: str) -> float:
        total, rate = self._format_frame_duration(format_id)
        return float(Fraction(int(rate)) / Fraction(int(total)))

    def number_of_frames(self: Any, time_value: str | None, format_id: str) -> int:
        total, rate = self._format_frame_duration(format_id)
        return round(_seconds(time_value) * Fraction(int(rate)) / Fraction(int(total)))

    fx.to_rational_time = to_rational_time
    fx.from_rational_time = from_rational_time
    fx.format_name = lambda frame_rate, path: ""  # no ffprobe subprocess
    fx.FcpxOtio._framerate_to_frame_duration = staticmethod(framerate_to_frame_duration)
    fx.FcpxOtio._calculate_rational_number = staticmethod(_fcpx_time)
    fx.FcpxXml._format_frame_rate = format_frame_rate
    fx.FcpxXml._number_of_frames = number_of_frames


def load() -> Any:
    """The ``opentimelineio`` module, its FCP X adapter patched (once per process)."""
    global _PATCHED
    import opentimelineio as otio

    if not _PATCHED:
        _patch_fcpx()
        _PATCHED = True
    return otio
