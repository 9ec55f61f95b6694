"""The render operators, called directly on tiny media the tests make: frame exactness, layers, sound.

Sources show their own frame number (``make_indexed_clip``), so every output frame can be
checked against the rule: frame k shows the source frame nearest to ``in + (k - at) / fps``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from operators.media.info import AssetMedia
from operators.media.probe import probe
from operators.render.plan import PlanParams, render_plan
from operators.render.resolve import TimelineError, frame_of
from operators.render.timeline import Timeline
from operators.types import SourceRef
from tests.render_testing import probed_assets, render_timeline
from tests.mediagen import INDEX_SIZE, make_indexed_clip, media_ctx, read_index


def _gray_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


def _expected(k: int, start: int, src_in: Fraction, fps: Fraction, src_fps: Fraction, count: int) -> int:
    t = src_in + Fraction(k - start) / fps
    return min(count - 1, math.floor(t * src_fps + Fraction(1, 2)))


def test_every_frame_shows_the_nearest_source_frame_across_mixed_rates(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    rates = {"s25": ("25", 60), "s2997": ("30000/1001", 72), "s30": ("30", 72)}
    for name, (fps, frames) in rates.items():
        make_indexed_clip(tmp_path / f"{name}.mp4", frames, fps)
    assets = probed_assets(ctx, **{name: f"{name}.mp4" for name in rates})
    ins = {"s25": Fraction(13, 25), "s2997": Fraction(7, 10), "s30": Fraction(1, 3)}
    clips = [{"asset": name, "in": str(ins[name]), "out": str(ins[name] + Fraction(3, 4)), "fit": "fill"}
             for name in rates]
    timeline = {"canvas": {"width": INDEX_SIZE[0], "height": INDEX_SIZE[1], "fps": "30"},
                "tracks": [{"type": "video", "clips": clips}]}
    out = render_timeline(ctx, timeline, assets)
    frames = _gray_frames(ctx.storage.local_path(out.path))
    fps = Fraction(30)
    assert len(frames) == out.meta["frame_count"] == 3 * frame_of(Fraction(3, 4), fps)
    start = 0
    for name, (rate, count) in rates.items():
        n = frame_of(Fraction(3, 4), fps)
        for k in range(start, start + n):
            want = _expected(k, start, ins[name], fps, Fraction(rate), count)
            assert read_index(frames[k]) == want, f"{name}: output frame {k}"
        start += n


def test_a_slow_timeline_repeats_source_frames_without_drift(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "src.mp4", 90, "30")
    assets = probed_assets(ctx, src="src.mp4")
    timeline = {"canvas": {"width": INDEX_SIZE[0], "height": INDEX_SIZE[1], "fps": "60"},
                "tracks": [{"type": "video", "clips": [{"asset": "src", "in": "10f", "out": 2, "fit": "fill"}]}]}
    out = render_timeline(ctx, timeline, assets)
    shown = [read_index(f) for f in _gray_frames(ctx.storage.local_path(out.path))]
    fps = Fraction(60)
    src_in = Fraction(10, 60)  # "10f" counts frames of the timeline's rate
    assert shown == [_expected(k, 0, src_in, fps, Fraction(30), 90) for k in range(len(shown))]
    assert len(shown) == frame_of((2 - src_in), fps)


def test_source_time_stays_exact_an_hour_in() -> None:
    from operators.render.resolve import VisualLayer

    clip = Timeline.model_validate({"tracks": [{"type": "video", "clips": [{"asset": "a"}]}]}).tracks[0].clips[0]
    fps = Fraction(30000, 1001)
    layer = VisualLayer(track=0, clip=0, asset_id="a", path="a", image=False, start=0, frames=10**6,
                        src_in=Fraction(1, 3), clip_spec=clip)
    k = 107892  # one hour of 29.97 fps
    assert layer.source_time(k, fps) == Fraction(1, 3) + Fraction(k * 1001, 30000)


def test_crossfade_blends_both_clips_and_keeps_sound_continuous(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "a.mp4", 60, "30", audio=True)
    assets = probed_assets(ctx, a="a.mp4")
    timeline = {"canvas": {"width": 160, "height": 96, "fps": 30},
                "tracks": [{"type": "video", "clips": [
                    {"asset": "a", "in": 0, "out": 1, "fit": "fill"},
                    {"asset": "a", "in": 1, "out": 2, "fit": "fill", "transition": {"type": "fade", "duration": 0.5}}]}]}
    out = render_timeline(ctx, timeline, assets)
    local = ctx.storage.local_path(out.path)
    frames = _gray_frames(local)
    assert len(frames) == 45  # 30 + 30 - 15 overlapping frames
    # Mid-fade, bars that differ between the two clips' frames sit between black and white.
    mid = frames[22].astype(int)[48]
    assert ((mid > 60) & (mid < 190)).any(), "no blended pixels in the middle of the crossfade"
    assert read_index(frames[10]) == 10 and read_index(frames[44]) == 59
    with av.open(str(local)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
    windows = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    assert (np.abs(windows).max(axis=1)[2:-2] > 0.05).all(), "a silent gap in the sound"
    assert abs(len(samples) / 48000 - 1.5) < 1 / 30


def test_title_shows_only_on_its_frames_where_it_is_placed(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    timeline = {"canvas": {"width": 320, "height": 180, "fps": 25, "background": "#000000"},
                "duration": 2,
                "tracks": [{"type": "text", "clips": [{"text": "HELLO", "at": 0.4, "duration": 0.8, "size": 40,
                                                       "position": "top-left", "color": "#ffffff"}]}]}
    out = render_timeline(ctx, timeline, {}, segment_seconds=0.5)
    frames = _gray_frames(ctx.storage.local_path(out.path))
    assert len(frames) == 50
    lit = [int((f[:90, :160] > 200).sum()) for f in frames]
    on = [k for k, n in enumerate(lit) if n > 50]
    assert on == list(range(10, 30)), on
    assert all((f[90:, :] > 200).sum() == 0 for f in frames), "text outside its top-left anchor"


def test_resolve_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "a.mp4", 30, "30")
    assets = probed_assets(ctx, a="a.mp4")
    timeline = Timeline.model_validate({"tracks": [{"type": "video", "clips": [
        {"asset": "a", "in": 0.5, "out": 0.5}, {"asset": "a", "in": 0, "out": 5}, {"asset": "nope"}]}]})
    with pytest.raises(TimelineError) as caught:
        timeline.with_assets(assets)
    locs = {loc: msg for loc, msg in caught.value.problems}
    assert set(locs) == {("tracks", 0, "clips", 0, "out"), ("tracks", 0, "clips", 1, "out"),
                         ("tracks", 0, "clips", 2, "asset")}
    assert "past the end" in locs[("tracks", 0, "clips", 1, "out")]


@pytest.mark.parametrize("rotation", [90, 270])
def test_a_phone_video_with_a_display_matrix_renders_upright(tmp_path: Path, rotation: int) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "p.mp4", 20, "30", rotation=rotation)
    assets = probed_assets(ctx, p="p.mp4")
    assert (assets["p"].info.video.display_width, assets["p"].info.video.display_height) == (96, 160)
    timeline = {"canvas": {"width": 96, "height": 160, "fps": 30},
                "tracks": [{"type": "video", "clips": [{"asset": "p", "fit": "fill"}]}]}
    out = render_timeline(ctx, timeline, assets)
    frames = _gray_frames(ctx.storage.local_path(out.path))
    assert frames[0].shape == (160, 96)
    # A player shows the coded picture turned counter-clockwise by ``rotation``; undo that to read it.
    assert [read_index(np.rot90(f, k=-rotation // 90)) for f in frames] == list(range(20))


def test_crop_keys_move_the_window_and_contain_letterboxes(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "a.mp4", 30, "30")
    assets = probed_assets(ctx, a="a.mp4")
    # Hold the left half for 0.5 s, then the right half: each shows five of the ten bars, stretched.
    keys = [{"t": 0, "x": 0, "width": 0.5}, {"t": 0.5, "x": 0.5, "width": 0.5}]
    timeline = {"canvas": {"width": 160, "height": 96, "fps": 30}, "tracks": [{"type": "video", "clips": [
        {"asset": "a", "out": 1, "fit": "fill", "crop": keys}]}]}
    frames = _gray_frames(ctx.storage.local_path(render_timeline(ctx, timeline, assets).path))

    def bars(gray: np.ndarray) -> int:  # five 32 px bars
        return sum(1 << b for b in range(5) if gray[48, b * 32 + 16] > 128)

    assert [bars(f) for f in frames[:15]] == [k & 31 for k in range(15)]
    assert [bars(f) for f in frames[15:]] == [k >> 5 for k in range(15, 30)]
    # contain: a 160x96 picture in a 96x160 canvas is 96x58, centred, with background above and below
    timeline = {"canvas": {"width": 96, "height": 160, "fps": 30, "background": "#000000"},
                "tracks": [{"type": "video", "clips": [{"asset": "a", "out": 0.2, "fit": "contain"}]}]}
    gray = _gray_frames(ctx.storage.local_path(render_timeline(ctx, timeline, assets).path))[5]
    assert gray[:45].max() < 30 and gray[116:].max() < 30, "letterbox bars are not background"
    assert gray[52:108].max() > 200, "the picture is not in the middle"


def test_image_clips_and_ducked_music(tmp_path: Path) -> None:
    from PIL import Image

    ctx = media_ctx(tmp_path)
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "red.png")
    make_indexed_clip(tmp_path / "voice.mp4", 60, "30", audio=True)
    assets = probed_assets(ctx, voice="voice.mp4")
    assets["red"] = AssetMedia(id="red", path="red.png", kind="source", content_type="image/png",
                               info=probe(SourceRef(path="red.png"), ctx=ctx))

    def run(duck: bool) -> np.ndarray:
        timeline = {"canvas": {"width": 64, "height": 48, "fps": 30}, "tracks": [
            {"type": "video", "clips": [{"asset": "red", "duration": 2}]},
            {"type": "audio", "clips": [{"asset": "voice", "at": 0, "out": 2, "volume": 0.5, "duck": duck}]},
            {"type": "audio", "clips": [{"asset": "voice", "at": 1, "out": 0.9}]}]}
        out = render_timeline(ctx, timeline, assets)
        local = ctx.storage.local_path(out.path)
        with av.open(str(local)) as container:
            rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
        assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60, "the image is not shown"
        with av.open(str(local)) as container:
            return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])

    plain, ducked = run(False), run(True)

    def rms(samples: np.ndarray, a: float, b: float) -> float:
        return float(np.sqrt((samples[int(a * 48000):int(b * 48000)] ** 2).mean()))

    # Before the voice comes in the music is untouched; under it, the music is 12 dB lower.
    assert abs(rms(ducked, 0.2, 0.8) - rms(plain, 0.2, 0.8)) < 0.01
    assert rms(ducked, 1.3, 1.8) < 0.8 * rms(plain, 1.3, 1.8)


def test_captions_too_wide_for_the_canvas_are_drawn_smaller(tmp_path: Path) -> None:
    import json

    from operators.render.text import rasterize

    ctx = media_ctx(tmp_path)
    make_indexed_clip(tmp_path / "a.mp4", 60, "30")
    assets = probed_assets(ctx, a="a.mp4")
    words = "extraordinarily comprehensive internationalization considerations".split()
    body = {"language": "en", "duration": 2.0, "segments": [{"start": 0, "end": 2, "text": " ".join(words), "words": [
        {"word": w, "start": i * 0.4, "end": i * 0.4 + 0.35, "probability": 1.0} for i, w in enumerate(words)]}]}
    (tmp_path / "t.json").write_text(json.dumps(body))
    assets["t"] = AssetMedia(id="t", path="t.json", kind="transcript", content_type="application/json")
    timeline = Timeline.model_validate({"canvas": {"width": 160, "height": 96, "fps": 30}, "tracks": [
        {"type": "video", "clips": [{"asset": "a", "out": 2}]},
        {"type": "captions", "transcript": "t", "size": 56, "max_chars": 42}]})
    plan = render_plan(timeline.with_assets(assets), params=PlanParams(), ctx=ctx)
    assert plan.overlays and all(o.style.size < 56 for o in plan.overlays)
    assert max(rasterize(o.lines, o.style).shape[1] for o in plan.overlays) <= 160


@pytest.mark.parametrize("kind", ["fade", "wipeleft", "wiperight", "wipeup", "wipedown", "slideleft", "slideright",
                                  "slideup", "slidedown"])
def test_every_transition_moves_from_one_clip_to_the_next(tmp_path: Path, kind: str) -> None:
    from PIL import Image

    ctx = media_ctx(tmp_path)
    assets = {}
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (64, 64), colour).save(tmp_path / f"{name}.png")
        assets[name] = AssetMedia(id=name, path=f"{name}.png", kind="source", content_type="image/png",
                                  info=probe(SourceRef(path=f"{name}.png"), ctx=ctx))
    timeline = {"canvas": {"width": 64, "height": 64, "fps": 20}, "tracks": [{"type": "video", "clips": [
        {"asset": "red", "duration": 1}, {"asset": "blue", "duration": 1, "transition": {"type": kind, "duration": 1}}]}]}
    with av.open(str(ctx.storage.local_path(render_timeline(ctx, timeline, assets, segment_seconds=0.5).path))) as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(frames) == 20  # the whole second is the transition
    blue_share = [float((f[..., 2] > f[..., 0]).mean()) for f in frames]
    assert blue_share[0] < 0.15 and blue_share[-1] > 0.85, blue_share
    mid = frames[10]
    if kind == "fade":
        assert 90 < mid[..., 0].mean() < 170 and 90 < mid[..., 2].mean() < 170  # both, half and half
    else:
        assert 0.35 < blue_share[10] < 0.65, blue_share  # half the picture is the new clip
        side = {"left": mid[:, 48:], "right": mid[:, :16], "up": mid[48:], "down": mid[:16]}[
            kind.removeprefix("wipe").removeprefix("slide")]
        assert (side[..., 2] > side[..., 0]).mean() > 0.9, f"{kind}: the new clip comes in from the wrong side"
