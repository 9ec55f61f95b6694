"""``clips.video_source``: the first step of generate_clip, so that a source it cannot use fails at once.

The clips become clip versions, whose timelines name assets: the source must be an asset
(``source_asset_id``), with a video stream to reframe. Both are checked here, before any
transcription, with one probe that the later steps reuse.
"""

from __future__ import annotations

from operators.context import OpContext
from operators.errors import MediaError, OperatorError
from operators.media.info import MediaInfo
from operators.media.probe import probe
from operators.registry import operator
from operators.types import Frozen, SourceRef

__all__ = ["VideoSource", "video_source"]


class VideoSource(Frozen):
    source: SourceRef
    info: MediaInfo


@operator("clips.video_source", weight=1, version=1)
def video_source(source: SourceRef, *, ctx: OpContext) -> VideoSource:
    """Check the source is a video asset, and describe it."""
    if source.asset_id is None:
        raise OperatorError("generate_clip makes clip versions, whose timelines name assets: give the source as "
                            "source_asset_id (upload it with POST /assets/, or ingest it) rather than source_uri")
    info = probe(source, ctx=ctx)
    if info.video is None:
        raise MediaError("generate_clip needs a video source: this one has no video stream to reframe "
                         "(an audio-only source cannot make a 9:16 clip)")
    return VideoSource(source=source, info=info)
