"""Tiny SRT and WebVTT parsers for the tests: enough to prove the files are well formed.

Each returns ``[(start_seconds, end_seconds, text_lines)]`` and asserts on anything malformed.
"""

from __future__ import annotations

import re

__all__ = ["parse_srt", "parse_vtt"]

_SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")
_VTT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def _secs(groups: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for n, block in enumerate((b for b in text.strip("\n").split("\n\n") if b.strip()), 1):
        lines = block.split("\n")
        assert lines[0] == str(n), f"cue number {lines[0]!r}, expected {n}"
        m = _SRT_TIME.match(lines[1])
        assert m, f"bad SRT timing line {lines[1]!r}"
        assert len(lines) > 2 and all(line.strip() for line in lines[2:]), f"cue {n} has no text"
        cues.append((_secs(m.groups()[:4]), _secs(m.groups()[4:]), lines[2:]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    assert text.startswith("WEBVTT\n"), "a WebVTT file starts with WEBVTT"
    cues = []
    for block in (b for b in text.split("\n\n")[1:] if b.strip()):
        lines = block.strip("\n").split("\n")
        m = _VTT_TIME.match(lines[0])
        assert m, f"bad VTT timing line {lines[0]!r}"
        assert len(lines) > 1 and all(line.strip() for line in lines[1:]), "a cue has no text"
        cues.append((_secs(m.groups()[:4]), _secs(m.groups()[4:]), lines[1:]))
    return cues
