"""``speech.plan_windows``: pack speech segments into Whisper-sized windows.

Whisper pads every call to 30 s, so a 4 s window costs nearly as much as a 30 s one:
packing consecutive segments until the next would overflow ``max_seconds`` is what
makes the fan-out cheap. Windows are cut only between segments, i.e. in silence the
VAD heard, so no word is split between two Whisper calls.

``pack="span"`` (the default) bounds a window's start-to-end by ``max_seconds``.
``pack="speech"`` bounds only what Whisper will hear when ``speech.transcribe_window``
runs with ``gaps="skip"``: the window's segments joined with each silence between them
cut to ``KEPT_GAP_SECONDS``, so a window may span more than 30 s of the source. It gives
fewer windows on sparse speech. With ``max_seconds=30`` it measured slower: on 80 s of
sentences with 3-6 s silences, 2 windows took 3.8 s against 2.7 s for 3 span-packed ones
(tiny.en, 1 thread), because Whisper needed a second pass; WER 0.115 vs 0.083. That second
pass comes from filling the whole 30 s input: Whisper then often leaves the last sentence
unclosed, and faster-whisper runs another full pass from its start. With ``max_seconds=28``
the joined windows rarely need it: over 5 espeak layouts (684 words) speech/skip/28 s made
69 word errors in 14 passes, against 79 errors in 16 passes for span/zero/30 s, with 5 % less
CPU. The ``transcribe`` graph therefore sets ``pack: speech, max_seconds: 28`` (and
``gaps: skip``); the operator defaults stay the conservative span packing.

A single segment longer than ``max_seconds`` (someone talking without a 300 ms pause)
must be cut inside speech. It is cut at the longest of the VAD's short in-speech dips
(``SpeechMap.pauses``) found in the last ``pause_search_seconds`` before the limit; the
VAD probability is lowest there, so it is the best guess for a breath between words.
Only when there is no dip at all is the rest cut evenly into equal pieces.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.context import OpContext, cluster_threads
from operators.registry import operator
from operators.speech.models import Span, SpeechMap, Window, WindowGroup

__all__ = [
    "KEPT_GAP_SECONDS",
    "GroupParams",
    "WindowParams",
    "group",
    "group_windows",
    "heard_seconds",
    "kept_ranges",
    "plan",
    "plan_windows",
    "split_long_segment",
]

_EPS = 1e-6

# With gaps="skip", transcribe_window keeps this much of each silence between two
# segments. Whisper aligns the first word after a pause better when it hears a pause:
# on the test minute, the mean error of sentence onsets went 0.18 s -> 0.16 s from 0 to
# 0.5 s, at no cost in WER.
KEPT_GAP_SECONDS = 0.5


def kept_ranges(segments, gap: float = KEPT_GAP_SECONDS) -> list[tuple[float, float]]:
    """``segments`` with every silence between them shortened to at most ``gap`` seconds."""
    ranges: list[list[float]] = []
    for a, b in segments:
        if ranges and a - ranges[-1][1] <= gap:
            ranges[-1][1] = b
            continue
        if ranges:
            ranges[-1][1] += gap / 2
            a -= gap / 2
        ranges.append([a, b])
    return [(a, b) for a, b in ranges]


def heard_seconds(segments: list[Span]) -> float:
    """How long Whisper hears ``segments`` for once the silences between them are shortened."""
    return sum(b - a for a, b in kept_ranges(segments))


class WindowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_seconds: float = Field(30.0, gt=1.0, le=30.0, description="longest window; Whisper sees 30 s at a time")
    pack: Literal["span", "speech"] = Field(
        "span",
        description="'span': a window's start-to-end is at most max_seconds; 'speech': only its speech "
        "is (for transcribe_window with gaps='skip', which drops the silences between segments)",
    )
    balance: bool = Field(False, description="even out the windows' lengths, keeping their number (see plan)")
    pause_search_seconds: float = Field(
        12.0, gt=0, description="how far before the limit to look for a pause when a segment must be cut"
    )

    @model_validator(mode="after")
    def _search_fits(self) -> WindowParams:
        if self.pause_search_seconds >= self.max_seconds:
            raise ValueError("pause_search_seconds must be shorter than max_seconds")
        return self


def split_long_segment(segment: Span, pauses: list[Span], params: WindowParams) -> list[Span]:
    """Cut one segment into adjacent pieces of at most ``max_seconds`` (see the module doc)."""
    start, end = segment
    pieces: list[Span] = []
    cur = start
    while end - cur > params.max_seconds + _EPS:
        limit = cur + params.max_seconds
        earliest = limit - params.pause_search_seconds
        inside = [(a, b) for a, b in pauses if a >= earliest and b <= limit and (a + b) / 2 > cur]
        if inside:
            # Longest dip wins; among equals, the later one keeps the piece fuller.
            a, b = max(inside, key=lambda p: (round(p[1] - p[0], 3), p[0]))
            cut = (a + b) / 2
        else:
            cut = cur + (end - cur) / math.ceil((end - cur) / params.max_seconds)
        pieces.append((cur, cut))
        cur = cut
    pieces.append((cur, end))
    return pieces


def plan(speech: SpeechMap, params: WindowParams) -> list[Window]:
    """The windows for ``speech``: ordered, non-overlapping, each at most ``max_seconds``.

    With ``balance``, as few windows as packing at ``max_seconds`` gives, but of even lengths:
    the smallest limit that still gives that many. Greedy packing fills every window but the last,
    so 41 s of speech became 28 s + 13 s; the job waits for the longest window, and Whisper's
    cost grows with the words it writes, so 20.5 s + 20.5 s finishes sooner on two workers.
    """
    windows = _pack(speech, params)
    if not params.balance or len(windows) < 2:
        return windows
    lo, hi = params.max_seconds / 2, params.max_seconds
    for _ in range(20):  # bisect to ~1e-5 of max_seconds; each try is one pass over the segments
        mid = (lo + hi) / 2
        search = min(params.pause_search_seconds, mid / 2)
        if len(_pack(speech, params.model_copy(update={"max_seconds": mid, "pause_search_seconds": search}))) > len(windows):
            lo = mid
        else:
            hi = mid
    return _pack(speech, params.model_copy(update={"max_seconds": hi, "pause_search_seconds": min(params.pause_search_seconds, hi / 2)}))


def _pack(speech: SpeechMap, params: WindowParams) -> list[Window]:
    pieces: list[Span] = []
    for seg in sorted(speech.segments):
        if seg[1] - seg[0] > params.max_seconds + _EPS:
            inside = [p for p in speech.pauses if seg[0] <= p[0] and p[1] <= seg[1]]
            pieces.extend(split_long_segment(seg, inside, params))
        elif seg[1] > seg[0]:
            pieces.append(seg)

    groups: list[list[Span]] = []
    for piece in pieces:
        if groups:
            if params.pack == "span":
                size = piece[1] - groups[-1][0][0]
            else:
                size = heard_seconds(groups[-1] + [piece])
            if size <= params.max_seconds + _EPS:
                groups[-1].append(piece)
                continue
        groups.append([piece])
    return [
        Window(index=i, count=len(groups), start=g[0][0], end=g[-1][1], segments=tuple(g))
        for i, g in enumerate(groups)
    ]


@operator("speech.plan_windows", weight=0.1)
def plan_windows(speech: SpeechMap, *, params: WindowParams, ctx: OpContext) -> list[Window]:
    """Group speech segments into windows of at most 30 s, cut in silences."""
    speech = SpeechMap.model_validate(speech)
    windows = plan(speech, params)
    covered = sum(w.duration for w in windows)
    ctx.log(
        f"Planned {len(windows)} window(s) covering {covered:.1f} s of {speech.duration:.1f} s "
        f"(max {params.max_seconds:g} s each)"
    )
    ctx.progress(1.0)
    return windows


class GroupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(8, ge=1, le=32, description="windows one task decodes in one batched call")
    tasks: int | None = Field(None, ge=1, description="tasks to spread the windows over; default: the cluster's threads")


def group(windows: list[Window], batch_size: int, threads: int) -> list[WindowGroup]:
    """Consecutive windows in as few tasks as keep every thread busy, at most about ``batch_size`` windows each.

    At least one task per thread while there are windows enough (a lone task would leave cores
    idle), and enough tasks that each holds about one batch: a long recording becomes many
    tasks of about ``batch_size`` windows, which spread over workers as they free up. Their
    number is a multiple of ``threads``, so the last round keeps every thread busy too: 130
    windows on 2 threads make 18 tasks of 7-8, not 17 of which the last runs alone.
    """
    if not windows:
        return []
    rounds = math.ceil(len(windows) / (batch_size * threads))
    count = min(len(windows), rounds * threads)
    size, extra = divmod(len(windows), count)
    groups, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        groups.append(WindowGroup(index=i, count=count, windows=tuple(windows[start:end])))
        start = end
    return groups


@operator("speech.group_windows", weight=0.1)
def group_windows(windows: list[Window], *, params: GroupParams, ctx: OpContext) -> list[WindowGroup]:
    """Share the windows among tasks: one per cluster thread at least, about one batch each."""
    planned = [Window.model_validate(w) for w in windows]
    groups = group(planned, params.batch_size, params.tasks or cluster_threads(1))
    ctx.log(f"Grouped {len(planned)} window(s) into {len(groups)} task(s)")
    ctx.progress(1.0)
    return groups
