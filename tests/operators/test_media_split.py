"""media.split_keyframes: chunks tile the video stream, every frame exactly once."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from pydantic import ValidationError

from operators import SourceRef
from operators.media.chunks import SplitParams, plan_chunks, split_keyframes
from operators.media.probe import probe
from tests.mediagen import make_audio_only, make_clip, media_ctx


def _frame_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)


def _assert_tiles(chunks, pts: list[int]) -> None:
    """Every frame falls in exactly one chunk, and the chunks are contiguous."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.count == len(chunks) for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end_pts == b.start_pts
    for p in pts:
        owners = [c.index for c in chunks if c.start_pts <= p < c.end_pts]
        assert len(owners) == 1, (p, owners)
    for c in chunks:
        assert c.frame_count == sum(c.start_pts <= p < c.end_pts for p in pts)
        assert c.seek_pts <= c.start_pts
    assert sum(c.frame_count for c in chunks) == len(pts)


def test_split_2997_b_frames_on_keyframes(tmp_path):
    make_clip(tmp_path / "a.mp4", seconds=3, fps="30000/1001", gop=15, audio=False)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="a.mp4"), ctx=ctx)
    chunks = split_keyframes(SourceRef(path="a.mp4"), info, params=SplitParams(target_seconds=1.0, min_seconds=0.3), ctx=ctx)
    pts = _frame_pts(tmp_path / "a.mp4")
    _assert_tiles(chunks, pts)
    assert len(chunks) == 3
    # Keyframes every 15 frames, so every cut lands on one.
    assert all(c.keyframe_aligned and c.seek_pts == c.start_pts for c in chunks)
    assert chunks[0].start == 0.0 and chunks[-1].end == pytest.approx(90 * 1001 / 30000)


def test_split_single_huge_gop_still_splits(tmp_path):
    make_clip(tmp_path / "g.mp4", seconds=3, fps="30", gop=1000, audio=False)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="g.mp4"), ctx=ctx)
    chunks = split_keyframes(SourceRef(path="g.mp4"), info, params=SplitParams(target_seconds=1.0, min_seconds=0.3), ctx=ctx)
    _assert_tiles(chunks, _frame_pts(tmp_path / "g.mp4"))
    assert len(chunks) == 3
    assert chunks[0].keyframe_aligned
    # Only one keyframe: later chunks start mid-GOP and decode from the first frame.
    assert not any(c.keyframe_aligned for c in chunks[1:])
    assert all(c.seek_pts == chunks[0].start_pts for c in chunks)


def test_split_vfr(tmp_path):
    make_clip(tmp_path / "v.mp4", seconds=2, vfr=True, gop=20, audio=False)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="v.mp4"), ctx=ctx)
    chunks = split_keyframes(SourceRef(path="v.mp4"), info, params=SplitParams(target_seconds=0.7, min_seconds=0.2), ctx=ctx)
    assert len(chunks) > 1
    _assert_tiles(chunks, _frame_pts(tmp_path / "v.mp4"))


def test_split_audio_only_gives_no_chunks(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=1)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="a.m4a"), ctx=ctx)
    assert split_keyframes(SourceRef(path="a.m4a"), info, params=SplitParams(), ctx=ctx) == []


def test_plan_short_video_is_one_chunk():
    packets = [(i, i, i == 0, 1) for i in range(30)]
    chunks = plan_chunks(packets, Fraction(1, 30), SplitParams(target_seconds=10))
    assert len(chunks) == 1
    assert (chunks[0].start_pts, chunks[0].end_pts, chunks[0].frame_count) == (0, 30, 30)


def test_plan_never_leaves_a_tail_shorter_than_min():
    # 10.5 s at 10 fps, keyframes every second: a 0.5 s tail must merge into the last chunk.
    packets = [(i, i, i % 10 == 0, 1) for i in range(105)]
    chunks = plan_chunks(packets, Fraction(1, 10), SplitParams(target_seconds=3, min_seconds=1))
    durations = [c.end - c.start for c in chunks]
    assert min(durations) >= 1.0
    assert sum(c.frame_count for c in chunks) == 105
    assert all(c.keyframe_aligned for c in chunks)


def test_plan_prefers_keyframe_nearest_target():
    # Keyframes at 0, 4, 9, 13 s (1 fps); target 10 s → cut at 9, not 13 (> 1.5x would be 15, both allowed).
    keys = {0, 4, 9, 13}
    packets = [(i, i, i in keys, 1) for i in range(30)]
    chunks = plan_chunks(packets, Fraction(1, 1), SplitParams(target_seconds=10, min_seconds=3))
    assert chunks[1].start_pts == 9


def test_split_params_validate():
    assert SplitParams(target_seconds=1).shortest == pytest.approx(0.3)
    assert SplitParams(target_seconds=1, min_seconds=0.5).shortest == 0.5
    with pytest.raises(ValidationError):
        SplitParams(target_seconds=2, min_seconds=5)
    with pytest.raises(ValidationError):
        SplitParams(target_seconds=2, bogus=1)
