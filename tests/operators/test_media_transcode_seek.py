"""A chunk starts decoding at its own keyframe, not one GOP early (MP4 with B-frames seeks by pts)."""

from __future__ import annotations

import av
import pytest

from operators.media.chunks import SplitParams, split_keyframes
from operators.media.probe import probe
from operators.media.transcode import _packets_from_keyframe
from operators.types import SourceRef
from tests.mediagen import make_clip, media_ctx


@pytest.mark.parametrize("container", ["mp4", "matroska"])
def test_chunks_start_at_their_keyframe(tmp_path, container):
    name = "src.mp4" if container == "mp4" else "src.mkv"
    make_clip(tmp_path / name, seconds=3, fps="30", gop=15, audio=False, container=container)
    ctx = media_ctx(tmp_path)
    source = SourceRef(path=name)
    info = probe(source, ctx=ctx)
    chunks = split_keyframes(source, info, params=SplitParams(target_seconds=0.5, min_seconds=0.2), ctx=ctx)
    assert len(chunks) >= 4
    with av.open(str(tmp_path / name)) as c:
        stream = c.streams.video[0]
        for chunk in chunks:
            first = next(iter(_packets_from_keyframe(c, stream, chunk)))
            assert first.is_keyframe
            # Exactly the chunk's keyframe: landing a GOP early would decode 15 frames for nothing.
            assert first.pts == chunk.seek_pts
