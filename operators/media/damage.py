"""Decoding past damage: packets the decoder refuses are counted, not fatal, until they pass a stated share.

A damaged packet gives no frame: the callers fill its place (video: the frame before it stays on screen; sound:
silence of the same length, :func:`fill_gaps`), so timing and frame counts stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av

from operators.errors import MediaError

__all__ = ["DAMAGE_LIMIT", "Damage", "decode_tolerant", "fill_gaps"]


#: The share of a stream's frames (or, for sound, packets) that may be damaged and still be played
#: through, as FFmpeg plays through a few bad packets with a warning; beyond it the source is refused.
DAMAGE_LIMIT = 0.05
#: What a decoder raises for a packet it cannot read (garbage in the media data); anything else is
#: no damage of the file's and still fails the operator. FFmpeg's AAC decoder answers some garbage
#: with EPERM (a channel configuration it will not switch to mid-stream).
_DAMAGED = (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.UndefinedError, av.error.PermissionError)


class Damage:
    """Decodes packets one by one, counting those the decoder refuses instead of failing on the first.

    A damaged packet gives no frame: the callers fill its place (video: the frame before it stays on
    screen; sound: silence), so timing and frame counts stay exact, and :meth:`check` refuses the
    source when more than ``DAMAGE_LIMIT`` of it was damaged.
    """

    def __init__(self) -> None:
        self.packets = 0

    def decode(self, packet: Any) -> list[Any]:
        try:
            return packet.decode()
        except _DAMAGED:
            self.packets += 1
            return []

    @staticmethod
    def check(damaged: int, total: int, what: str) -> None:
        """Raise when ``damaged`` of ``total`` is over the limit, saying how much and what to try."""
        if total and damaged > DAMAGE_LIMIT * total:
            raise MediaError(
                f"The source file is damaged: {damaged} of its {total} {what} ({damaged / total:.0%}) could not "
                f"be decoded, more than the {DAMAGE_LIMIT:.0%} that is played through. Re-export or re-upload "
                "the file.")


def decode_tolerant(container: Any, stream: Any, damage: Damage) -> Iterator[Any]:
    """``container.decode(stream)``, but past damaged packets (counted in ``damage``) instead of failing on one."""
    for packet in container.demux(stream):
        yield from damage.decode(packet)


def fill_gaps(frames: Iterable[Any]) -> Iterator[Any]:
    """Decoded sound with silence in the holes damaged packets left (over 10 ms), so what follows keeps its time."""
    expected: Fraction | None = None
    for frame in frames:
        if frame.pts is not None:
            start = frame.pts * frame.time_base
            if expected is not None and start - expected > Fraction(1, 100):
                yield _silent_like(frame, round((start - expected) * frame.sample_rate), expected)
            expected = start + Fraction(frame.samples, frame.sample_rate)
        yield frame


def _silent_like(frame: Any, samples: int, at: Fraction) -> Any:
    silence = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=samples)
    for plane in silence.planes:
        plane.update(bytes(plane.buffer_size))
    silence.sample_rate, silence.time_base = frame.sample_rate, frame.time_base
    silence.pts = round(at / frame.time_base)
    return silence
