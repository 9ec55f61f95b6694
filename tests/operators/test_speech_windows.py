"""speech.plan_windows: windows of at most 30 s, cut only in silences."""

from __future__ import annotations

import pytest

from operators import OperatorParamsError, OpContext, Storage, get_operator
from operators.speech.models import SpeechMap, Window
from operators.speech.windows import KEPT_GAP_SECONDS, WindowParams, group, heard_seconds, kept_ranges, plan_windows


@pytest.fixture()
def ctx(tmp_path) -> OpContext:
    return OpContext(job_id="job_test", node="x", storage=Storage(str(tmp_path)))


def _speech(segments, duration=None, pauses=()) -> SpeechMap:
    duration = duration if duration is not None else (segments[-1][1] + 1.0 if segments else 10.0)
    return SpeechMap(duration=duration, segments=tuple(segments), pauses=tuple(pauses))


def _every_4s(n: int) -> list[tuple[float, float]]:
    # 3 s of speech every 4 s: 1 s silences between.
    return [(1.0 + 4 * i, 4.0 + 4 * i) for i in range(n)]


def _assert_cut_in_silence(windows: list[Window], speech: SpeechMap) -> None:
    pieces = [p for w in windows for p in w.segments]
    assert pieces == sorted(pieces)
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(w.count == len(windows) for w in windows)
    for w in windows:
        assert (w.start, w.end) == (w.segments[0][0], w.segments[-1][1])
    for a, b in zip(windows, windows[1:]):
        assert a.end <= b.start
        # The boundary between two windows is a boundary between two VAD segments.
        assert any(s[1] == a.end for s in speech.segments) and any(s[0] == b.start for s in speech.segments)


def test_span_packing_keeps_every_window_within_30s_and_cuts_in_silence(ctx):
    speech = _speech(_every_4s(20))  # 80 s
    windows = plan_windows(speech=speech, params=WindowParams(), ctx=ctx)
    assert WindowParams().pack == "span"
    assert all(w.end - w.start <= 30.0 for w in windows)
    # Greedy packing: 7 segments span 27 s, an 8th would make 31 s.
    assert [len(w.segments) for w in windows] == [7, 7, 6]
    _assert_cut_in_silence(windows, speech)


def test_speech_packing_counts_what_whisper_hears(ctx):
    # 1 s of speech every 4 s: by span a window holds 8 segments, by what Whisper hears
    # (speech plus KEPT_GAP_SECONDS of each silence) it holds 20 (20 + 19 * 0.5 = 29.5 s).
    speech = _speech([(1.0 + 4 * i, 2.0 + 4 * i) for i in range(24)])
    assert [len(w.segments) for w in plan_windows(speech=speech, params=WindowParams(pack="span"), ctx=ctx)] == [8, 8, 8]
    windows = plan_windows(speech=speech, params=WindowParams(pack="speech"), ctx=ctx)
    assert KEPT_GAP_SECONDS == 0.5
    assert [len(w.segments) for w in windows] == [20, 4]
    assert all(heard_seconds(list(w.segments)) <= 30.0 for w in windows)
    _assert_cut_in_silence(windows, speech)


def test_kept_ranges_shorten_only_long_silences():
    assert kept_ranges([(0.0, 1.0), (1.3, 2.0), (5.0, 6.0)], 0.5) == [(0.0, 2.25), (4.75, 6.0)]
    assert heard_seconds([(0.0, 1.0), (1.3, 2.0), (5.0, 6.0)]) == pytest.approx(3.5)


def test_silence_only_gives_no_windows(ctx):
    assert plan_windows(speech=_speech([], duration=42.0), params=WindowParams(), ctx=ctx) == []


def test_a_long_segment_is_cut_at_its_longest_pause(ctx):
    # 75 s of talk; brief dips at 12, 24.5 (longest in reach of the first cut), 27, 50 and 58 s.
    pauses = [(12.0, 12.1), (24.4, 24.6), (27.0, 27.1), (50.0, 50.2), (58.0, 58.05)]
    speech = _speech([(0.0, 75.0)], pauses=pauses)
    windows = plan_windows(speech=speech, params=WindowParams(pack="span"), ctx=ctx)
    cuts = [w.start for w in windows[1:]]
    assert cuts == [pytest.approx(24.5), pytest.approx(50.1)]
    assert all(w.end - w.start <= 30.0 for w in windows)
    assert windows[0].start == 0.0 and windows[-1].end == 75.0


def test_a_long_segment_without_pauses_is_cut_evenly(ctx):
    speech = _speech([(5.0, 75.0)])
    windows = plan_windows(speech=speech, params=WindowParams(pack="span"), ctx=ctx)
    lengths = [w.end - w.start for w in windows]
    assert lengths == [pytest.approx(70 / 3)] * 3
    assert windows[0].start == 5.0 and windows[-1].end == 75.0


def test_windows_cover_all_speech_exactly_once(ctx):
    segs = [(0.5, 2.0), (2.4, 9.0), (9.5, 45.0), (47.0, 48.0), (60.0, 61.5)]
    speech = _speech(segs)
    for pack in ("span", "speech"):
        windows = plan_windows(speech=speech, params=WindowParams(pack=pack), ctx=ctx)
        covered = sum(b - a for w in windows for a, b in w.segments)
        assert covered == pytest.approx(sum(b - a for a, b in segs))
        size = (lambda w: w.end - w.start) if pack == "span" else (lambda w: heard_seconds(list(w.segments)))
        assert all(size(w) <= 30.0 + 1e-6 for w in windows)


def test_params_are_validated_by_the_registry():
    spec = get_operator("speech.plan_windows")
    assert spec.parse_params({"max_seconds": 20}).max_seconds == 20
    with pytest.raises(OperatorParamsError, match="max_seconds"):
        spec.parse_params({"max_seconds": 45})
    with pytest.raises(OperatorParamsError):
        spec.parse_params({"max_secs": 20})


def test_balanced_packing_keeps_the_count_and_evens_the_lengths(ctx):
    # 3 s of speech every 4 s, 11 times: greedy packing gives 27 s + 15 s; balanced, 23 s + 19 s.
    speech = _speech(_every_4s(11))
    greedy = plan_windows(speech=speech, params=WindowParams(pack="span", max_seconds=28), ctx=ctx)
    balanced = plan_windows(speech=speech, params=WindowParams(pack="span", max_seconds=28, balance=True), ctx=ctx)
    assert [w.end - w.start for w in greedy] == [27.0, 15.0]
    assert len(balanced) == 2
    assert [w.end - w.start for w in balanced] == [23.0, 19.0]
    _assert_cut_in_silence(balanced, speech)


def test_groups_keep_every_thread_busy_and_hold_about_one_batch():
    windows = [Window(index=i, count=20, start=30.0 * i, end=30.0 * i + 28) for i in range(20)]
    assert [len(g.windows) for g in group(windows[:3], 8, 2)] == [2, 1]  # one task per thread
    assert [len(g.windows) for g in group(windows[:1], 8, 2)] == [1]
    # About a batch each, in a multiple of the threads (no last round with one task alone).
    assert [len(g.windows) for g in group(windows, 8, 2)] == [5, 5, 5, 5]
    assert [len(g.windows) for g in group(windows[:17], 8, 2)] == [5, 4, 4, 4]  # 17 > 2 x 8: two rounds
    assert [len(g.windows) for g in group(windows[:18], 4, 2)] == [3] * 6
    groups = group(windows, 8, 4)
    assert [len(g.windows) for g in groups] == [5, 5, 5, 5]
    assert [w for g in groups for w in g.windows] == windows  # in order, each window once
    assert [(g.index, g.count) for g in groups] == [(i, 4) for i in range(4)]
    assert group([], 8, 2) == []
