"""Real footage's awkward properties through ingest and export, the operators called directly (issue 19).

A screen recording that switches 30 → 60 → 10 fps, an MPEG-TS whose streams start at 1.4 s and apart
(with one keyframe), interlaced video, and a file with 64 KiB of garbage in its media data. Every
output is read back independently: frame counts, constant frame rate, and sync measured on the
markers each source carries (a white frame and a beep at every whole second).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from operators.errors import MediaError
from operators.export.audio import AudioParams as ExportAudioParams
from operators.export.audio import encode_audio
from operators.export.deliver import deliver
from operators.export.encode import encode_chunk
from operators.export.plan import PlanParams, export_plan
from operators.export.presets import ExportPresets
from operators.media.audio import AudioParams
from operators.media.probe import probe
from operators.media.thumbnails import PosterParams, poster
from operators.types import SourceRef
from tests.footagegen import (
    combing,
    damage_mdat,
    make_dense_clip,
    make_interlaced,
    make_ts,
    make_vfr_switch,
    marker_times,
)
from tests.mediagen import media_ctx, run_ingest

FAST_MP4 = {"name": "small", "base": "mp4-720p", "encoder_preset": "ultrafast"}


def _export(ctx: Any, rel: str) -> Path:
    source = SourceRef(path=rel)
    info = probe(source, ctx=ctx)
    plan = export_plan(source, info, ExportPresets.model_validate([FAST_MP4]), params=PlanParams(chunk_seconds=1.0),
                       ctx=ctx)
    parts = [encode_chunk(source, task, info, ctx=ctx) for task in plan.video_tasks]
    tracks = [encode_audio(source, info, a, None, None, params=ExportAudioParams(), ctx=ctx) for a in plan.audio]
    (delivery,) = plan.deliveries
    return ctx.storage.local_path(deliver(delivery, parts, tracks, info, ctx=ctx).path)


def _read(path: Path) -> dict[str, Any]:
    """Frames (time, luma) from the first video frame, frame-time steps, and the sound, decoded with PyAV."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="gray")) for f in c.decode(v)]
    out: dict[str, Any] = {"frames": frames, "count": len(frames)}
    times = [t for t, _ in frames]
    out["video_start"] = times[0]
    out["steps"] = {round(b - a, 6) for a, b in zip(times, times[1:], strict=False)}
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            decoded = list(c.decode(a))
            out["audio_start"] = float(decoded[0].pts * a.time_base)
            out["audio"] = np.concatenate([f.to_ndarray()[0] for f in decoded])
            out["rate"] = a.sample_rate
    return out


def _assert_in_sync(read: dict[str, Any], markers: int, frame: float, lost: int = 0) -> None:
    """Each flash is within one frame of its beep (output times, both from the first video frame).

    ``lost``: how many flashes may be missing (a damaged stretch shows the frame before in their place).
    """
    flashes, beeps = marker_times(read["frames"], read["audio"], read["rate"], read["audio_start"])
    assert len(beeps) == markers and markers - lost <= len(flashes) <= markers, (flashes, beeps)
    drift = max(min(abs(f - b) for b in beeps) for f in flashes)
    assert drift < frame, (flashes, beeps)


def _ingest(ctx: Any, rel: str, constant_rate: bool) -> tuple[Any, Path]:
    """probe → split → transcode → audio → join (as ``run_ingest``), choosing the proxy's ``constant_rate``."""
    from operators.media.audio import transcode_audio
    from operators.media.chunks import SplitParams, split_keyframes
    from operators.media.join import JoinParams, join_chunks
    from operators.media.transcode import TranscodeParams, transcode_chunk

    source = SourceRef(path=rel)
    info = probe(source, ctx=ctx)
    chunks = split_keyframes(source, info, params=SplitParams(target_seconds=0.5, min_seconds=0.2), ctx=ctx)
    cfr = {"constant_rate": True} if constant_rate else {}  # the default: the source's own timestamps
    params = TranscodeParams(preset="ultrafast", encode_threads=1, decode_threads=1, **cfr)
    parts = [transcode_chunk(source, c, info, params=params, ctx=ctx) for c in chunks]
    track = transcode_audio(source, info, params=AudioParams(copy_compatible=False), ctx=ctx)
    (proxy,) = join_chunks(parts, info, track, params=JoinParams(), ctx=ctx)
    return info, ctx.storage.local_path(proxy.path)


@pytest.mark.parametrize("constant_rate", [False, True], ids=["proxy-keeps-timestamps", "proxy-constant-rate"])
def test_a_recording_switching_30_60_10_fps_keeps_its_sync(tmp_path: Path, constant_rate: bool) -> None:
    ctx = media_ctx(tmp_path)
    make_vfr_switch(tmp_path / "vfr.mp4")  # 30 + 60 + 10 = 100 frames over exactly 3 s
    info, proxy = _ingest(ctx, "vfr.mp4", constant_rate)
    video = info.video
    assert video is not None and video.is_vfr
    # The rule: the average rate (frames over the timestamps' duration), so count and length stay;
    # the last frame (at 10 fps) lasts 0.1 s, as the one before it.
    assert (video.rate, video.duration) == (Fraction(100, 3), 3.0)
    read = _read(proxy)
    assert read["count"] == 100 and read["video_start"] == 0.0
    if constant_rate:
        assert read["steps"] == {0.03}  # every frame 1/(100/3) s after the one before
    else:
        assert read["steps"] == {round(1 / 30, 6), round(1 / 60, 6), 0.1}  # the source's own timing
    _assert_in_sync(read, markers=3, frame=1 / 60 if not constant_rate else 0.03)


def test_a_variable_rate_export_is_constant_rate_at_the_average_rate_in_sync(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_vfr_switch(tmp_path / "vfr.mp4")
    read = _read(_export(ctx, "vfr.mp4"))
    assert read["count"] == 100  # not 102 (at FFmpeg's 34.09 fps average, taken with a guessed last frame)
    assert read["steps"] == {0.03}
    _assert_in_sync(read, markers=3, frame=0.03)


@pytest.mark.parametrize("gop", [30, 1000], ids=["keyframe-each-second", "one-keyframe"])
def test_an_mpeg_ts_starting_at_1_4s_keeps_its_sync_and_gives_a_poster(tmp_path: Path, gop: int) -> None:
    ctx = media_ctx(tmp_path)
    make_ts(tmp_path / "cap.ts", seconds=3.0, start=1.4, audio_lead=0.04, gop=gop)
    info, _, _, _, proxies = run_ingest(ctx, "cap.ts")
    assert info.video is not None and info.audio is not None
    assert info.video.start_pts * info.video.tb == Fraction(7, 5)
    for path in (ctx.storage.local_path(proxies[0].path), _export(ctx, "cap.ts")):
        read = _read(path)
        assert read["count"] == 75 and read["video_start"] == 0.0
        # The audio before the first frame is cut (outputs start at 0); the flashes and beeps agree.
        assert abs(read["audio_start"]) < 0.04
        _assert_in_sync(read, markers=3, frame=0.04)
    stored = poster(SourceRef(path="cap.ts"), info, params=PosterParams(at_seconds=0.6), ctx=ctx)
    assert stored is not None and stored.size > 0


def test_interlaced_sources_are_deinterlaced_in_proxy_and_export(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_interlaced(tmp_path / "i.mp4", frames=50)
    info, _, _, _, proxies = run_ingest(ctx, "i.mp4", audio=False)
    assert info.video is not None and info.video.interlaced
    assert min(combing(g) for _, g in _read(tmp_path / "i.mp4")["frames"]) > 50  # combs in every frame
    for path in (ctx.storage.local_path(proxies[0].path), _export(ctx, "i.mp4")):
        read = _read(path)
        assert read["count"] == 50 and read["steps"] == {0.04}
        assert max(combing(g) for _, g in read["frames"]) < 5


def _damaged(tmp_path: Path) -> str:
    make_dense_clip(tmp_path / "d.mp4", seconds=4.0)
    damage_mdat(tmp_path / "d.mp4", 64 * 1024)
    return "d.mp4"


def test_64_kib_of_garbage_is_decoded_past_and_counted_in_the_log(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    ctx = media_ctx(tmp_path)
    rel = _damaged(tmp_path)
    with caplog.at_level(logging.INFO, logger="operators"):
        info, _, parts, _, proxies = run_ingest(ctx, rel, audio_params=AudioParams(copy_compatible=False))
    assert sum(p.damaged for p in parts) > 0
    read = _read(ctx.storage.local_path(proxies[0].path))
    assert read["count"] == 120 and read["steps"] == {round(1 / 30, 6)}
    _assert_in_sync(read, markers=4, frame=1 / 30, lost=1)
    assert "damaged video packets could not be decoded" in caplog.text
    assert "audio packets were damaged" in caplog.text


def test_a_video_only_file_with_garbage_exports_all_its_frames(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    ctx = media_ctx(tmp_path)
    make_dense_clip(tmp_path / "v.mp4", audio=False)  # no sound: export's audio path is not involved
    damage_mdat(tmp_path / "v.mp4", 64 * 1024)
    with caplog.at_level(logging.INFO, logger="operators"):
        read = _read(_export(ctx, "v.mp4"))
    assert read["count"] == 120 and read["steps"] == {round(1 / 30, 6)}
    assert "damaged video packets could not be decoded" in caplog.text


def test_a_file_with_garbage_in_its_sound_exports(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    assert _read(_export(ctx, _damaged(tmp_path)))["count"] == 120


def test_damage_beyond_five_percent_is_refused_saying_how_much_and_what_to_try(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_dense_clip(tmp_path / "bad.mp4", seconds=2.0, audio=False)
    damage_mdat(tmp_path / "bad.mp4", 256 * 1024)
    with pytest.raises(MediaError, match=r"of its 60 video frames \(\d+%\) could not be decoded.*Re-export or "
                                         r"re-upload the file"):
        run_ingest(ctx, "bad.mp4", audio=False)
