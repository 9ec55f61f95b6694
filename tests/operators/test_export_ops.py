"""The export operators called directly: plans, frame selection, timeline files, loudness, GIF caps.

Plans are checked on described sources (no media); the rest on tiny media made by the tests,
whose frames show their own number (``make_indexed_clip``) where frame exactness is the point.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from operators.errors import MediaError
from operators.export.audio import AudioParams, encode_audio
from operators.export.deliver import deliver
from operators.export.encode import encode_chunk
from operators.export.gif import gif
from operators.export.loudness import LoudnessTarget, measure_file, measure_loudness
from operators.export.plan import PlanParams, export_plan, output_rate, plan_export
from operators.export.presets import BUILTIN, ExportPresets
from operators.export.otio.timelines import TimelineFormats, TimelineParams, read_back, summary, timelines
from operators.media.info import AssetMedia, AudioStreamInfo, Chunk, MediaInfo, VideoStreamInfo
from operators.media.probe import probe
from operators.render.timeline import Timeline
from operators.types import SourceRef
from tests.mediagen import make_clip, make_indexed_clip, media_ctx, read_index


def _info(width: int, height: int, fps: str = "30", seconds: float = 60.0, audio: bool = True) -> MediaInfo:
    rate = Fraction(fps)
    frames = round(seconds * rate)
    video = VideoStreamInfo(index=0, codec="h264", width=width, height=height, display_width=width,
                            display_height=height, fps=float(rate), fps_fraction=fps, frame_count=frames,
                            time_base=f"1/{rate.numerator * 1000}", duration=float(frames / rate))
    streams: list[Any] = [video]
    if audio:
        streams.append(AudioStreamInfo(index=1, codec="aac", sample_rate=48000, channels=2, layout="stereo",
                                       time_base="1/48000", duration=seconds))
    return MediaInfo(path="x.mp4", format="mov,mp4,m4a,3gp,3g2,mj2", duration=seconds, size=1, streams=streams)


def _chunks(info: MediaInfo, count: int) -> list[Chunk]:
    video = info.video
    assert video is not None
    step = video.frame_count // count
    ticks = int(1 / video.tb / video.rate)
    out = []
    for i in range(count):
        a, b = i * step * ticks, ((i + 1) * step if i + 1 < count else video.frame_count) * ticks
        out.append(Chunk(index=i, count=count, start_pts=a, end_pts=b, seek_pts=a, seek_ts=a,
                         frame_count=(b - a) // ticks, start=float(a * video.tb), end=float(b * video.tb),
                         time_base=video.time_base))
    return out


def _presets(*items: Any) -> list[Any]:
    return ExportPresets.model_validate(list(items)).presets


def test_the_social_bundle_shares_the_1080p_encode_and_decodes_each_chunk_once() -> None:
    info = _info(1920, 1080)
    plan = plan_export(info, _presets("mp4-1080p", "hls", "gif"), _chunks(info, 6))
    mp4 = plan.deliveries[0].rendition
    rungs = plan.hls[0].renditions
    assert mp4 is not None and mp4.key == rungs[0].key  # the same H.264 stream
    assert [(r.width, r.height) for r in rungs] == [(1920, 1080), (1280, 720), (854, 480), (640, 360)]
    assert [r.max_bitrate for r in rungs] == [8_000_000, 4_500_000, 2_000_000, 1_000_000]
    # One task per chunk, each encoding the four rungs (mp4-1080p is the first).
    assert len(plan.video_tasks) == 6 and all(len(t.renditions) == 4 for t in plan.video_tasks)
    assert [a.key for a in plan.audio] == ["aac-192k-48000-2ch"]  # the MP4's and the HLS package's
    (job,) = plan.gifs
    assert (job.width, job.height, job.fps, job.frames) == (480, 270, "15/1", 900)


def test_platform_presets_set_size_rate_and_bitrate_caps() -> None:
    info = _info(1920, 1080, "60")
    plan = plan_export(info, _presets("tiktok", "reels", "shorts", "youtube"), _chunks(info, 1))
    facts = {d.preset.name: (d.rendition.width, d.rendition.height, d.rendition.fps, d.rendition.max_bitrate)
             for d in plan.deliveries if d.rendition}
    assert facts == {"tiktok": (1080, 1920, "30/1", 10_000_000), "reels": (1080, 1920, "30/1", 5_000_000),
                     "shorts": (1080, 1920, None, 12_000_000), "youtube": (1920, 1080, None, 12_000_000)}
    tiktok = plan.deliveries[0].rendition
    assert tiktok is not None and "pad=1080:1920:0:656" in (tiktok.vf or "") and tiktok.frames == 1800
    assert output_rate(Fraction(60000, 1001), BUILTIN["tiktok"]) == Fraction(30000, 1001)
    assert output_rate(Fraction(25), BUILTIN["tiktok"]) == 25


def test_boxes_follow_the_source_orientation_and_never_upscale() -> None:
    portrait = _info(1080, 1920)
    plan = plan_export(portrait, _presets("mp4-720p", "hls"), _chunks(portrait, 1))
    r = plan.deliveries[0].rendition
    assert r is not None and (r.width, r.height) == (720, 1280)
    assert [(x.width, x.height) for x in plan.hls[0].renditions][:2] == [(1080, 1920), (720, 1280)]
    small = _info(640, 360, audio=False)
    plan = plan_export(small, _presets("mp4-1080p", "hls", "audio-mp3"), _chunks(small, 1))
    r = plan.deliveries[0].rendition
    assert r is not None and (r.width, r.height) == (640, 360)
    assert [x.height for x in plan.hls[0].renditions] == [360]  # the ladder capped at the source
    assert plan.skipped == {"audio-mp3": "the source has no audio stream"} and plan.audio == []


def _run(ctx: Any, rel: str, presets: list[Any], chunk_seconds: float = 1.0) -> dict[str, Any]:
    source = SourceRef(path=rel)
    info = probe(source, ctx=ctx)
    plan = export_plan(source, info, ExportPresets.model_validate(presets), params=PlanParams(chunk_seconds=chunk_seconds),
                       ctx=ctx)
    parts = [encode_chunk(source, task, info, ctx=ctx) for task in plan.video_tasks]
    tracks = [encode_audio(source, info, a, None, None, params=AudioParams(), ctx=ctx) for a in plan.audio]
    return {d.preset.name: deliver(d, parts, tracks, info, ctx=ctx) for d in plan.deliveries}


def test_lower_frame_rates_show_the_last_source_frame_at_each_output_time(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "i60.mp4", 120, "60")
    half = {"name": "half", "base": "mp4-720p", "max_fps": 30, "encoder_preset": "ultrafast"}
    third = {"name": "third", "base": "mp4-720p", "fps": 24, "encoder_preset": "ultrafast"}
    out = _run(ctx, "i60.mp4", ["mp4-720p", half, third])
    shown = {}
    for name, stored in out.items():
        with av.open(str(ctx.storage.local_path(stored.path))) as c:
            shown[name] = [read_index(f.to_ndarray(format="gray")) for f in c.decode(video=0)]
    assert shown["mp4-720p"] == list(range(120))  # at the source's rate: every frame, in order
    assert shown["half"] == list(range(0, 120, 2))
    assert shown["third"] == [int(Fraction(k, 24) * 60) for k in range(48)]  # 2 s at 24 fps


def _asset(ctx: Any, asset_id: str, rel: str, content_type: str = "video/mp4") -> AssetMedia:
    return AssetMedia(id=asset_id, path=rel, kind="source", content_type=content_type,
                      info=probe(SourceRef(path=rel), ctx=ctx))


def test_timeline_files_read_back_to_the_same_clips_in_and_out_points(tmp_path: Path) -> None:
    from PIL import Image

    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "talk.mp4", 400, "30000/1001", audio=True)
    make_indexed_clip(tmp_path / "broll.mp4", 100, "25")
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "logo.png")
    assets = {"talk": _asset(ctx, "talk", "talk.mp4"), "broll": _asset(ctx, "broll", "broll.mp4"),
              "logo": _asset(ctx, "logo", "logo.png", "image/png")}
    timeline = Timeline.model_validate({
        "canvas": {"width": 160, "height": 96, "fps": "30000/1001"},
        "tracks": [
            {"type": "video", "clips": [
                {"asset": "talk", "in": 2, "out": 4},
                {"asset": "talk", "in": 10, "out": 12, "transition": {"type": "fade", "duration": 0.5}},
                {"asset": "broll", "in": 1, "out": 3, "at": 5}]},
            {"type": "video", "clips": [{"asset": "logo", "duration": 1, "at": 1}]},
            {"type": "audio", "clips": [{"asset": "talk", "in": 0, "out": 3}]}]})
    ti = timeline.with_assets(assets)
    formats = TimelineFormats.model_validate(["otio", "fcpxml", "fcp7xml", "edl"])
    files = timelines(ti, formats, params=TimelineParams(title="Cut 1"), ctx=ctx)
    # At the source's rate: talk.mp4 in 2 s = frame 60 at 29.97, 60 frames; the 0.5 s fade (15 frames) is
    # centred on the cut: the first clip loses its last 8 frames, the second its first 7 (in 10 s = 300).
    # broll.mp4 (25 fps): in 1 s = frame 25, 2 s = 50 frames.
    expected = [[("talk.mp4", 60, 52), ("talk.mp4", 307, 53), ("broll.mp4", 25, 50)], [("logo.png", 0, 30)]]
    # The EDL holds one video track at one rate: broll's in and length counted at 29.97 (1 s = 30, 2 s = 60);
    # its dissolve reads back as CMX 3600 states one: the first clip up to the dissolve (60 - 15 frames), the
    # second from its real in point (frame 300) for its whole 60 frames.
    edl_expected = [[("talk.mp4", 60, 45), ("talk.mp4", 300, 60), ("broll.mp4", 30, 60)]]
    for fmt, stored in files.items():
        text = ctx.storage.local_path(stored.path).read_text()
        back = read_back(text, fmt, 30000 / 1001)
        assert summary(back) == (edl_expected if fmt == "edl" else expected), fmt
        if fmt in ("otio", "fcp7xml"):
            assert summary(back, "audio") == [[("talk.mp4", 0, 90)]], fmt
    edl = ctx.storage.local_path(files["edl"].path).read_text()
    assert "00:00:02;00" in edl and " D " in edl  # drop-frame timecode, the dissolve
    assert 'width="160" height="96"' in ctx.storage.local_path(files["fcpxml"].path).read_text()


def test_timeline_media_by_url(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "a.mp4", 30, "30")
    ti = Timeline.model_validate({"canvas": {"width": 160, "height": 96, "fps": 30}, "tracks": [
        {"type": "video", "clips": [{"asset": "a", "in": 0.5, "out": 1}]}]}).with_assets({"a": _asset(ctx, "a", "a.mp4")})
    files = timelines(ti, TimelineFormats.model_validate(["otio"]),
                      params=TimelineParams(media_base_url="https://cdn.example.com/"), ctx=ctx)
    text = ctx.storage.local_path(files["otio"].path).read_text()
    assert "https://cdn.example.com/assets/a/content" in text
    assert summary(read_back(text, "otio", 30)) == [[("content", 15, 15)]]


def _loud_wav(path: Path, seconds: float = 3.0, amplitude: float = 0.9) -> None:
    rate = 48000
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        for i in range(0, len(samples), 4800):
            frame = av.AudioFrame.from_ndarray(samples[None, i:i + 4800], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.mark.parametrize(("target", "codec"), [(-14.0, "mp4-720p"), (-23.0, "audio-mp3")])
def test_loudness_is_measured_then_applied_in_two_passes(tmp_path: Path, target: float, codec: str) -> None:
    ctx = media_ctx(tmp_path)
    _loud_wav(tmp_path / "loud.wav")
    source = SourceRef(path="loud.wav")
    info = probe(source, ctx=ctx)
    goal = LoudnessTarget(target=target, true_peak=-1)
    measured = measure_loudness(source, info, goal, ctx=ctx)
    assert measured is not None and -5 < measured.integrated < -2  # a 0.9 sine: about -3.6 LUFS
    plan = export_plan(source, info, ExportPresets.model_validate(["audio-wav", "audio-mp3"]), params=PlanParams(),
                       ctx=ctx)
    for encoding in plan.audio:
        track = encode_audio(source, info, encoding, measured, goal, params=AudioParams(), ctx=ctx)
        result = measure_file(ctx.storage.local_path(track.file.path))
        assert abs(result["integrated"] - target) <= 1 and result["true_peak"] < -1, (encoding.key, result)
        assert track.loudness == {"integrated": round(result["integrated"], 2), "true_peak": round(result["true_peak"], 2)}


def test_gifs_over_their_cap_are_made_smaller_or_refused(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_clip(tmp_path / "c.mp4", seconds=2.0, size=(320, 180), fps="25")
    source = SourceRef(path="c.mp4")
    info = probe(source, ctx=ctx)

    def make(cap: int) -> Any:
        plan = export_plan(source, info, ExportPresets.model_validate([{"name": "gif", "max_bytes": cap}]),
                           params=PlanParams(), ctx=ctx)
        return gif(source, info, plan.gifs[0], ctx=ctx)

    full = make(15_000_000)
    assert full.meta["width"] == 320 and full.meta["fps"] == "25/2" and full.meta["frame_count"] == 25
    smaller = make(full.size * 2 // 3)
    assert smaller.size <= full.size * 2 // 3 and (smaller.meta["colors"] < 256 or smaller.meta["width"] < 320)
    with pytest.raises(MediaError, match="over its .* cap"):
        make(10_000)


def test_an_hls_package_whose_variants_do_not_line_up_is_refused(tmp_path: Path) -> None:
    from operators.export.hls import VariantOutput, hls_package
    from operators.types import StoredFile

    info = _info(640, 360, seconds=4.0, audio=False)
    plan = plan_export(info, _presets({"name": "hls", "ladder": [360, 240], "segment_seconds": 2}), _chunks(info, 1))
    package = plan.hls[0]
    ctx = media_ctx(tmp_path)

    def variant(r: Any, keys: list[float]) -> VariantOutput:
        return VariantOutput(package="hls", index=package.renditions.index(r), name=f"{r.height}p", rendition=r,
                             codec="avc1.64001E", files=[StoredFile(path="x", kind="hls_segment", content_type="v", size=1)],
                             segments=[(2.0, 1000), (2.0, 1000)], starts=[0.0, 2.0], keyframes=keys, frames=r.frames)

    first, second = package.renditions
    with pytest.raises(MediaError, match="do not line up"):
        hls_package(package, [variant(first, [0.0, 2.0]), variant(second, [0.0, 2.033])], info, ctx=ctx)
    out = hls_package(package, [variant(first, [0.0, 2.0]), variant(second, [0.0, 2.0])], info, ctx=ctx)
    assert out.master.meta["keyframes_aligned"] and out.master.meta["bandwidth"] == [4000, 4000]
