"""The render reading awkward sources (issue 19): anamorphic SD, interlaced video, one keyframe, damage.

Each test renders a small timeline with the render operators called directly and measures the output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from operators.errors import MediaError
from tests.render_testing import probed_assets, render_timeline
from tests.mediagen import (
    INDEX_SIZE,
    combing,
    damage_mdat,
    make_anamorphic_clip,
    make_clip,
    make_indexed_gop_clip,
    make_interlaced_clip,
    media_ctx,
    read_index,
)


def _gray_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


def _one_clip(asset: str, size: tuple[int, int], fps: Any, **clip: Any) -> dict[str, Any]:
    return {"canvas": {"width": size[0], "height": size[1], "fps": fps},
            "tracks": [{"type": "video", "clips": [{"asset": asset, **clip}]}]}


def test_an_anamorphic_square_stays_square(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_anamorphic_clip(tmp_path / "pal.mp4", frames=10, side=288)
    assets = probed_assets(ctx, pal="pal.mp4")
    assert (assets["pal"].info.video.display_width, assets["pal"].info.video.display_height) == (1024, 576)
    for fit in ("contain", "cover"):
        out = render_timeline(ctx, _one_clip("pal", (480, 480), 25, out=0.2, fit=fit), assets, segment_seconds=10)
        gray = _gray_frames(ctx.storage.local_path(out.path))[2]
        white = gray > 128
        rows, cols = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
        width, height = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
        assert abs(width / height - 1) < 0.02, (fit, width, height)


def test_interlaced_sources_are_deinterlaced(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_interlaced_clip(tmp_path / "i.mp4", frames=25)
    assets = probed_assets(ctx, i="i.mp4")
    with av.open(str(tmp_path / "i.mp4")) as container:
        source = [combing(f.to_ndarray(format="gray")) for f in container.decode(video=0)]
    out = render_timeline(ctx, _one_clip("i", (320, 240), 25, out=1, fit="fill"), assets, segment_seconds=10)
    rendered = [combing(g) for g in _gray_frames(ctx.storage.local_path(out.path))]
    assert len(rendered) == 25
    assert min(source) > 2, source
    assert max(rendered) < min(source) / 3, (rendered, source)


@pytest.mark.parametrize("container", ["mpegts", "mp4"])
def test_a_source_with_one_keyframe_renders_from_any_in_point(tmp_path: Path, container: str) -> None:
    ctx = media_ctx(tmp_path)
    name = f"one.{'ts' if container == 'mpegts' else 'mp4'}"
    make_indexed_gop_clip(tmp_path / name, 50, "25", gop=250, container=container)
    assets = probed_assets(ctx, one=name)
    out = render_timeline(ctx, _one_clip("one", INDEX_SIZE, 25, **{"in": 0.6, "out": 1.4, "fit": "fill"}), assets, segment_seconds=10)
    shown = [read_index(g) for g in _gray_frames(ctx.storage.local_path(out.path))]
    assert shown == list(range(15, 35))


def test_damaged_packets_are_decoded_past_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = media_ctx(tmp_path)
    make_clip(tmp_path / "d.mp4", seconds=6.0, size=(1280, 720), fps="25", audio=False)
    damage_mdat(tmp_path / "d.mp4")
    assets = probed_assets(ctx, d="d.mp4")
    with caplog.at_level(logging.INFO):
        out = render_timeline(ctx, _one_clip("d", (320, 180), 25, fit="fill"), assets, segment_seconds=10)
    assert len(_gray_frames(ctx.storage.local_path(out.path))) == 150
    lines = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(lines) == 1 and "track 1 clip 1" in lines[0] and "skipped" in lines[0], lines


def test_a_badly_damaged_source_fails_saying_how_much(tmp_path: Path) -> None:
    ctx = media_ctx(tmp_path)
    make_clip(tmp_path / "d.mp4", seconds=2.0, size=(320, 240), fps="25", audio=False)
    damage_mdat(tmp_path / "d.mp4")
    assets = probed_assets(ctx, d="d.mp4")
    with pytest.raises(MediaError) as caught:
        render_timeline(ctx, _one_clip("d", (320, 240), 25, fit="fill"), assets, segment_seconds=10)
    message = str(caught.value)
    assert "track 1 clip 1" in message and "could not be decoded" in message and "%" in message, message
    assert "trim" in message, message
