"""Rendering a timeline with the render operators called directly, as the render graph chains them (tests only)."""

from __future__ import annotations

from typing import Any

from operators.media.info import AssetMedia
from operators.media.probe import probe
from operators.render.join import RenderJoinParams, render_join
from operators.render.mix import MixParams, mix_audio
from operators.render.plan import PlanParams, render_plan
from operators.render.segment import EncodeParams, render_segment
from operators.render.timeline import Timeline
from operators.types import SourceRef, StoredFile

__all__ = ["probed_assets", "render_timeline"]


def probed_assets(ctx: Any, **files: str) -> dict[str, AssetMedia]:
    """``asset id -> path`` as the submission would describe them (probed)."""
    out = {}
    for asset_id, rel in files.items():
        info = probe(SourceRef(path=rel), ctx=ctx)
        out[asset_id] = AssetMedia(id=asset_id, path=rel, kind="source", content_type="video/mp4", info=info)
    return out


def render_timeline(ctx: Any, timeline: dict[str, Any], assets: dict[str, AssetMedia],
                    segment_seconds: float = 0.7) -> StoredFile:
    render_input = Timeline.model_validate(timeline).with_assets(assets)
    plan = render_plan(render_input, params=PlanParams(segment_seconds=segment_seconds), ctx=ctx)
    parts = [render_segment(plan, s, params=EncodeParams(threads=1), ctx=ctx) for s in plan.segments]
    return render_join(parts, mix_audio(plan, params=MixParams(), ctx=ctx), plan, params=RenderJoinParams(), ctx=ctx)
