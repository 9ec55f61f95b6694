"""Colour management (issue 19 items 1-3): every picture we make shows the source's colours.

Each source kind is a card of known patches (``tests/colourgen.py``) encoded as phones and
cameras do: BT.709 tagged, untagged SD (read as BT.601) and HD (BT.709), full-range H.264 and
MJPEG, 10-bit HLG and PQ (BT.2020). The proxy, the poster, a render (at the source's size and at
half) and the exports (a plain scale, a libavfilter crop, a GIF) must show every patch within
ΔE 3 of the patch itself, and be tagged BT.709 limited range. The export encoder's cleanup on a
failure (issue 20 item 11) is checked at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from operators.export.encode import _Encoder, encode_chunk
from operators.export.gif import gif
from operators.export.plan import PlanParams as ExportPlanParams
from operators.export.plan import export_plan
from operators.export.presets import ExportPresets
from operators.media.colour import OUTPUT, ColourScaler, colour_of
from operators.media.info import AssetMedia
from operators.media.thumbnails import PosterParams, poster
from operators.media.tonemap import KNEE, to_sdr, tone_map
from operators.render.plan import PlanParams, render_plan
from operators.render.segment import EncodeParams, render_segment
from operators.render.timeline import Timeline
from operators.types import SourceRef
from tests.colourgen import KINDS, PATCHES, delta_e, first_frame, make_card_clip, patch_colours, sdr_to_hdr
from tests.mediagen import media_ctx, run_ingest

MAX_DELTA_E = 3.0


def _render(ctx: Any, asset: AssetMedia, size: tuple[int, int]) -> Path:
    timeline = {"canvas": {"width": size[0], "height": size[1], "fps": 30},
                "tracks": [{"type": "video", "clips": [{"asset": "a"}]}]}
    plan = render_plan(Timeline.model_validate(timeline).with_assets({"a": asset}),
                       params=PlanParams(segment_seconds=1), ctx=ctx)
    segment = render_segment(plan, plan.segments[0], params=EncodeParams(threads=1), ctx=ctx)
    return ctx.storage.local_path(segment.path)


def _outputs(tmp_path: Path, kind: str, rotation: int = 0) -> dict[str, Any]:
    """Every picture the operators make of a ``kind`` card: name → first decoded frame."""
    suffix, (w, h) = KINDS[kind]
    rel = f"src.{suffix}"
    make_card_clip(tmp_path / rel, kind, rotation=rotation)
    ctx = media_ctx(tmp_path)
    info, _, _, _, proxies = run_ingest(ctx, rel, audio=False)
    source = SourceRef(path=rel)
    out = {"proxy": first_frame(tmp_path / proxies[0].path)}
    still = poster(source, info, params=PosterParams(), ctx=ctx)
    out["poster"] = first_frame(tmp_path / still.path)
    asset = AssetMedia(id="a", path=rel, kind="source", content_type="video/mp4", info=info)
    shown = (h, w) if rotation % 180 else (w, h)
    out["render"] = first_frame(_render(ctx, asset, shown))
    out["render-half"] = first_frame(_render(ctx, asset, (shown[0] // 2, shown[1] // 2)))
    presets = ExportPresets.model_validate([
        "mp4-720p", {"name": "cover", "base": "mp4-720p", "width": shown[0] // 2, "height": shown[1] // 2,
                     "fit": "cover"}, {"name": "gif", "duration": 0.1, "width": 160}])
    plan = export_plan(source, info, presets, params=ExportPlanParams(chunk_seconds=1), ctx=ctx)
    for task in plan.video_tasks:
        for part in encode_chunk(source, task, info, ctx=ctx).parts:
            out[f"export {part.rendition}"] = first_frame(tmp_path / part.path)
    out["gif"] = first_frame(tmp_path / gif(source, info, plan.gifs[0], ctx=ctx).path)
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_picture_shows_the_source_colours(tmp_path: Path, kind: str) -> None:
    outputs = _outputs(tmp_path, kind)
    assert len(outputs) == 7  # proxy, poster, two renders, two exports (one through crop), GIF
    errors = {name: delta_e(patch_colours(frame), PATCHES) for name, frame in outputs.items()}
    worst = {name: round(float(e.max()), 2) for name, e in errors.items()}
    assert all(e <= MAX_DELTA_E for e in worst.values()), worst
    for name, frame in outputs.items():
        if name in ("proxy", "render", "render-half") or name.startswith("export"):
            assert frame.format.name == "yuv420p", name
            assert (frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range) == (1, 1, 1, 1), name


def test_a_phone_hlg_clip_turned_upright_keeps_its_colours(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, "hlg", rotation=90)
    for name, frame in outputs.items():
        # The proxy keeps the display matrix (coded orientation); everything else is upright.
        turn = 0 if name == "proxy" else -1
        assert delta_e(patch_colours(frame, turn), PATCHES).max() <= MAX_DELTA_E, name


def test_sources_are_read_by_their_tags_or_the_players_rule(tmp_path: Path) -> None:
    read = {}
    for kind in KINDS:
        read[kind] = colour_of(first_frame(make_card_clip(tmp_path / f"{kind}.{KINDS[kind][0]}", kind, frames=1)))
    assert read["bt709"] == read["hd-untagged"] == OUTPUT
    assert (read["sd-untagged"].matrix, read["sd-untagged"].full_range) == ("bt470", False)
    assert (read["full-h264"].matrix, read["full-h264"].full_range) == ("bt709", True)
    assert (read["mjpeg"].matrix, read["mjpeg"].full_range) == ("bt470", True)
    assert (read["hlg"].transfer, read["hlg"].primaries, read["hlg"].peak_nits) == ("arib-std-b67", "bt2020", 1000)
    assert read["pq"].hdr and not read["bt709"].hdr


def test_hdr_highlights_roll_off_instead_of_clipping() -> None:
    light = np.array([0.0, 0.25, 0.5, KNEE, 1.0, 2.0, 3.5, 1000 / 203])  # relative to SDR white
    mapped = tone_map(np.repeat(light[:, None], 3, axis=1), 1000 / 203)[:, 0]
    assert np.all(np.diff(mapped) > 0) and mapped[-1] == pytest.approx(1.0)
    assert np.allclose(mapped[light <= KNEE], light[light <= KNEE])  # SDR light is left alone
    # Hue kept: a bright orange keeps its channel ratios while it is compressed.
    orange = tone_map(np.array([3.0, 1.5, 0.3]), 1000 / 203)
    assert orange[0] < 1.0
    assert (orange[1] / orange[0], orange[2] / orange[0]) == (pytest.approx(0.5), pytest.approx(0.1))
    # Through the real filter graph: 75 % HLG is reference white (SDR white less the roll-off's
    # headroom); brighter signal stays brighter in SDR instead of clipping to one white.
    levels = []
    signals = (0.5, 0.7, 0.75, 0.8, 0.85, 1.0)
    for signal in signals:
        y = np.full((32, 64), round((16 + 219 * signal) * 4), np.uint16)
        c = np.full((8, 64), 512, np.uint16)
        frame = av.VideoFrame.from_ndarray(np.concatenate([y, c, c]), format="yuv420p10le")
        frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range = 9, 18, 9, 1
        levels.append(float(ColourScaler(64, 32, "rgb24")(frame).to_ndarray().mean()))
    assert levels == sorted(levels) and len({round(v) for v in levels}) == len(levels), levels
    expected = to_sdr(np.array([[s] * 3 for s in signals]), "arib-std-b67", "bt2020", 1000.0)
    assert np.allclose(levels, expected[:, 0] * 255, atol=2.5), (levels, expected[:, 0] * 255)
    assert levels[-1] >= 253


def test_the_hdr_card_reference_matches_the_conversion_maths() -> None:
    # The card's HDR signal (tests/colourgen.py) and the product's maths (media/tonemap.py) are
    # written apart; below the knee each must undo the other.
    for transfer, name in (("hlg", "arib-std-b67"), ("pq", "smpte2084")):
        signal = sdr_to_hdr(PATCHES, transfer)
        assert signal.max() < 0.76  # all at or below reference white
        assert np.abs(to_sdr(signal, name, "bt2020", 1000.0) - PATCHES).max() < 2e-3, transfer


def test_an_export_encode_that_fails_midway_closes_and_removes_its_files(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    make_card_clip(tmp_path / "src.mp4", "bt709", frames=6)
    ctx = media_ctx(tmp_path)
    source = SourceRef(path="src.mp4")
    from operators.media.probe import probe

    info = probe(source, ctx=ctx)
    presets = ExportPresets.model_validate(["mp4-720p", {"name": "small", "base": "mp4-720p", "width": 160,
                                                         "height": 120}])
    plan = export_plan(source, info, presets, params=ExportPlanParams(chunk_seconds=1), ctx=ctx)
    task = plan.video_tasks[0]
    aborted: list[bool] = []
    encode, abort = _Encoder.encode, _Encoder.abort

    def failing(self: _Encoder, frame: Any, pts: int) -> None:
        if self.count == 3:
            raise RuntimeError("encoder died")
        encode(self, frame, pts)

    def watched(self: _Encoder) -> None:
        # Still open and its temp file still there: closed before the storage block removes it.
        aborted.append(not self._closed and Path(self.container.name).exists())
        abort(self)

    monkeypatch.setattr(_Encoder, "encode", failing)
    monkeypatch.setattr(_Encoder, "abort", watched)
    with pytest.raises(RuntimeError, match="encoder died"):
        encode_chunk(source, task, info, ctx=ctx)
    assert aborted and all(aborted) and len(aborted) == len(task.renditions)
    chunks = tmp_path / "jobs" / "job_test" / "export" / "chunks"
    assert chunks.is_dir() and [p for p in chunks.rglob("*") if p.is_file()] == []
