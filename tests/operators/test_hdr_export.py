"""The ``hevc-1080p-hdr`` preset (issue 19): HDR is kept only where a preset asks for it.

An HLG card (``tests/colourgen.py``) exported with ``hevc-1080p-hdr`` comes out as 10-bit HEVC
tagged BT.2020 + HLG whose patches hold the source's own code values (not tone-mapped), while
``hevc-1080p`` of the same source is 8-bit BT.709, tone-mapped as every other output. An SDR
source exported with ``hevc-1080p-hdr`` is 10-bit BT.709, not faked HDR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from pydantic import ValidationError

from operators.export.deliver import deliver
from operators.export.encode import encode_chunk
from operators.export.plan import PlanParams, export_plan
from operators.export.presets import ExportPresets
from operators.media.probe import probe
from operators.types import SourceRef
from tests.colourgen import PATCHES, delta_e, first_frame, make_card_clip, patch_colours, ycc_to_rgb
from tests.mediagen import media_ctx

#: 10-bit code values a patch's mean may move through scaling and CRF 26 coding of flat patches.
MAX_CODE_ERROR = 3.0


def _export(tmp_path: Path, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each preset's delivered file, first frame: (frames, stream facts) by preset name."""
    make_card_clip(tmp_path / "src.mp4", kind)
    ctx = media_ctx(tmp_path)
    source = SourceRef(path="src.mp4")
    info = probe(source, ctx=ctx)
    plan = export_plan(source, info, ExportPresets.model_validate(["hevc-1080p", "hevc-1080p-hdr"]),
                       params=PlanParams(chunk_seconds=1), ctx=ctx)
    keys = {d.preset.name: d.rendition.key for d in plan.deliveries if d.rendition is not None}
    assert len(set(keys.values())) == 2  # the HDR rendition is never shared with the SDR one
    parts = [encode_chunk(source, task, info, ctx=ctx) for task in plan.video_tasks]
    frames, facts = {}, {}
    for delivery in plan.deliveries:
        stored = deliver(delivery, parts, [], info, ctx=ctx)  # verify's checks pass (hvc1, faststart, timing)
        with av.open(str(tmp_path / stored.path)) as container:
            stream = container.streams.video[0]
            facts[delivery.preset.name] = (stream.codec_context.name, stream.codec_tag,
                                           stream.codec_context.pix_fmt)
        frames[delivery.preset.name] = first_frame(tmp_path / stored.path)
    frames["source"] = first_frame(tmp_path / "src.mp4")
    return frames, facts


def _patch_codes(frame: Any) -> np.ndarray:
    """Each patch's mean 10-bit Y', Cb, Cr (the middle half of each patch)."""
    assert frame.format.name == "yuv420p10le"
    y, u, v = (np.frombuffer(p, np.uint16).reshape(p.height, -1)[:, :p.width].astype(float) for p in frame.planes)
    h, w = y.shape
    bw, bh = w / 4, h / 3
    out = []
    for r, c in (divmod(i, 4) for i in range(len(PATCHES))):
        r0, r1, c0, c1 = int((r + .25) * bh), int((r + .75) * bh), int((c + .25) * bw), int((c + .75) * bw)
        out.append([y[r0:r1, c0:c1].mean(), u[r0 // 2:r1 // 2, c0 // 2:c1 // 2].mean(),
                    v[r0 // 2:r1 // 2, c0 // 2:c1 // 2].mean()])
    return np.array(out)


def _tags(frame: Any) -> tuple[int, int, int, int]:
    return frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range


def test_hevc_hdr_keeps_an_hlg_source_hdr_and_hevc_1080p_tone_maps_it(tmp_path: Path) -> None:
    frames, facts = _export(tmp_path, "hlg")
    hdr, sdr, source = frames["hevc-1080p-hdr"], frames["hevc-1080p"], frames["source"]
    assert facts["hevc-1080p-hdr"] == ("hevc", "hvc1", "yuv420p10le")
    assert _tags(hdr) == (9, 18, 9, 1)  # BT.2020, arib-std-b67, BT.2020 non-constant, limited
    error = np.abs(_patch_codes(hdr) - _patch_codes(source))
    assert error.max() <= MAX_CODE_ERROR, error.round(1)
    # As every other output: 8-bit BT.709, the HDR tone-mapped to the card's SDR patches.
    assert facts["hevc-1080p"] == ("hevc", "hvc1", "yuv420p")
    assert _tags(sdr) == (1, 1, 1, 1)
    assert delta_e(patch_colours(sdr), PATCHES).max() <= 3.0


def test_hevc_hdr_of_an_sdr_source_is_10_bit_bt709(tmp_path: Path) -> None:
    frames, facts = _export(tmp_path, "bt709")
    hdr = frames["hevc-1080p-hdr"]
    assert facts["hevc-1080p-hdr"] == ("hevc", "hvc1", "yuv420p10le")
    assert _tags(hdr) == (1, 1, 1, 1)  # no fake HDR
    shown = ycc_to_rgb(_patch_codes(hdr) / 4, "709", False)
    assert delta_e(shown, PATCHES).max() <= 3.0


def test_only_hevc_presets_keep_hdr() -> None:
    with pytest.raises(ValidationError, match="only HEVC presets keep HDR"):
        ExportPresets.model_validate([{"name": "mine", "base": "mp4-1080p", "hdr": True}])
    assert not ExportPresets.model_validate(["hevc-1080p"]).presets[0].hdr
