"""Chunked transcode + join: frame-exact proxies, in sync, faststart; broken joins are refused."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from operators import MediaError
from operators.media.join import JoinParams, join_chunks
from tests.mediagen import make_audio_only, make_clip, media_ctx, run_ingest


def _video_pts(path) -> tuple[list[int], Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(p.pts for p in c.demux(s) if p.size), s.time_base


def _seconds(pts: list[int], tb: Fraction) -> list[Fraction]:
    return [p * tb for p in pts]


def _top_level_atoms(path) -> list[bytes]:
    atoms, data, i = [], path.read_bytes(), 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        atoms.append(data[i + 4 : i + 8])
        i += size if size > 1 else len(data)
    return atoms


@pytest.mark.parametrize("copy_audio", [True, False], ids=["aac-copied", "aac-encoded"])
def test_ingest_2997_b_frames_is_frame_exact_and_in_sync(tmp_path, copy_audio):
    from operators.media.audio import AudioParams

    make_clip(tmp_path / "src.mp4", seconds=2, fps="30000/1001", gop=12)
    ctx = media_ctx(tmp_path)
    info, chunks, parts, track, proxies = run_ingest(ctx, "src.mp4", target_seconds=0.5, renditions=(720, 120),
                                                     audio_params=AudioParams(copy_compatible=copy_audio))
    # The source's 128 kb/s AAC-LC fits the proxy as it is: copied, unless copying is off.
    assert track.meta.get("copied", False) is copy_audio
    assert len(chunks) >= 3
    assert [p.chunk.index for p in parts] == list(range(len(chunks)))
    assert all(p.frame_count == c.frame_count for p, c in zip(parts, chunks, strict=True))
    assert [p.meta["rendition"] for p in proxies] == [720, 120]

    src_pts, src_tb = _video_pts(tmp_path / "src.mp4")
    for proxy in proxies:
        assert proxy.kind == "proxy" and proxy.content_type == "video/mp4"
        path = tmp_path / proxy.path
        assert proxy.size == path.stat().st_size
        out_pts, out_tb = _video_pts(path)
        # Same frames at the same instants: 29.97 timing survived chunking exactly.
        assert _seconds(out_pts, out_tb) == _seconds(src_pts, src_tb)
        assert proxy.meta["frame_count"] == info.video.frame_count == 60
        with av.open(str(path)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
            assert len(list(c.decode(v))) == 60
            frame = 1001 / 30000
            v_dur = float(v.duration * v.time_base)
            a_dur = float(a.duration * a.time_base)
            assert abs(v_dur - info.video.duration) < frame
            assert abs((a_dur - v_dur) - (info.audio.duration - info.video.duration)) < frame
        atoms = _top_level_atoms(path)
        assert atoms.index(b"moov") < atoms.index(b"mdat")
    # Never upscaled: a 240-line source stays 240 lines in the "720p" proxy.
    assert (proxies[0].meta["width"], proxies[0].meta["height"]) == (320, 240)
    assert (proxies[1].meta["width"], proxies[1].meta["height"]) == (160, 120)


def test_ingest_single_gop_mid_gop_chunks(tmp_path):
    make_clip(tmp_path / "g.mp4", seconds=2, fps="30", gop=1000, audio=False)
    ctx = media_ctx(tmp_path)
    info, chunks, parts, track, proxies = run_ingest(ctx, "g.mp4", target_seconds=0.5, audio=False)
    assert sum(not c.keyframe_aligned for c in chunks) >= 2
    assert track is None
    out_pts, out_tb = _video_pts(tmp_path / proxies[0].path)
    src_pts, src_tb = _video_pts(tmp_path / "g.mp4")
    assert _seconds(out_pts, out_tb) == _seconds(src_pts, src_tb)
    with av.open(str(tmp_path / proxies[0].path)) as c:
        assert not c.streams.audio
        assert len(list(c.decode(video=0))) == 60


def test_ingest_odd_size_gives_even_proxy(tmp_path):
    make_clip(tmp_path / "odd.mp4", seconds=1, size=(321, 241), audio=False)
    ctx = media_ctx(tmp_path)
    info, _, _, _, proxies = run_ingest(ctx, "odd.mp4", renditions=(120,), audio=False)
    with av.open(str(tmp_path / proxies[0].path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width % 2, cc.height % 2) == (0, 0)
        assert cc.height == 120 and cc.width == 160
        assert cc.pix_fmt == "yuv420p"


def test_ingest_rotation_keeps_display_matrix(tmp_path):
    make_clip(tmp_path / "r.mp4", seconds=1, rotation=90, audio=False)
    ctx = media_ctx(tmp_path)
    info, _, _, _, proxies = run_ingest(ctx, "r.mp4", renditions=(160,), audio=False)
    # Display 240x320 scaled to 160 tall is 120x160; stored turned back, with the matrix.
    assert (proxies[0].meta["width"], proxies[0].meta["height"]) == (120, 160)
    with av.open(str(tmp_path / proxies[0].path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (160, 120)
        assert next(c.decode(video=0)).rotation == 90


def test_ingest_vfr_keeps_timestamps(tmp_path):
    make_clip(tmp_path / "v.mp4", seconds=2, vfr=True, gop=20)
    ctx = media_ctx(tmp_path)
    info, chunks, _, _, proxies = run_ingest(ctx, "v.mp4", target_seconds=0.7)
    assert info.video.is_vfr and len(chunks) > 1
    out_pts, out_tb = _video_pts(tmp_path / proxies[0].path)
    src_pts, src_tb = _video_pts(tmp_path / "v.mp4")
    assert _seconds(out_pts, out_tb) == _seconds(src_pts, src_tb)
    assert len({b - a for a, b in zip(out_pts, out_pts[1:], strict=False)}) == 2


def test_audio_only_proxy_is_the_audio(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=1)
    ctx = media_ctx(tmp_path)
    info, chunks, parts, track, proxies = run_ingest(ctx, "a.m4a")
    assert chunks == [] and parts == []
    assert track is not None and track.kind == "proxy_audio"
    assert len(proxies) == 1 and proxies[0].kind == "proxy"
    assert proxies[0].meta["audio_only"] is True
    with av.open(str(tmp_path / proxies[0].path)) as c:
        assert not c.streams.video and c.streams.audio[0].codec_context.name == "aac"
        samples = sum(f.samples for f in c.decode(audio=0))
        assert abs(samples / 44100 - 1.0) < 0.05


def test_join_without_anything_returns_nothing(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=0.5)
    ctx = media_ctx(tmp_path)
    from operators import SourceRef
    from operators.media.probe import probe

    info = probe(SourceRef(path="a.m4a"), ctx=ctx)
    assert join_chunks([], info, None, params=JoinParams(), ctx=ctx) == []


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("join")
    make_clip(root / "s.mp4", seconds=2, gop=15)
    ctx = media_ctx(root)
    return ctx, run_ingest(ctx, "s.mp4", target_seconds=0.5, renditions=(120,))


def test_join_refuses_a_missing_chunk(ingested):
    ctx, (info, _, parts, track, _) = ingested
    with pytest.raises(MediaError, match="incomplete"):
        join_chunks(parts[:1] + parts[2:], info, track, params=JoinParams(), ctx=ctx)


def test_join_refuses_a_gap(ingested):
    ctx, (info, _, parts, track, _) = ingested
    moved = parts[1].chunk.model_copy(update={"start_pts": parts[1].chunk.start_pts + 1})
    broken = [parts[0], parts[1].model_copy(update={"chunk": moved}), *parts[2:]]
    with pytest.raises(MediaError, match="gap"):
        join_chunks(broken, info, track, params=JoinParams(), ctx=ctx)


def test_join_refuses_a_short_chunk(ingested):
    ctx, (info, _, parts, track, _) = ingested
    short = parts[1].model_copy(update={"frame_count": parts[1].frame_count - 1})
    with pytest.raises(MediaError, match="holds .* frames where the source has"):
        join_chunks([parts[0], short, *parts[2:]], info, track, params=JoinParams(), ctx=ctx)


def test_join_accepts_parts_out_of_order(ingested):
    ctx, (info, _, parts, track, _) = ingested
    proxies = join_chunks(list(reversed(parts)), info, track, params=JoinParams(), ctx=ctx)
    assert proxies[0].meta["frame_count"] == 60


def test_join_detects_audio_drift(ingested, tmp_path):
    ctx, (info, _, parts, track, _) = ingested
    # Claim the source audio is 0.1 s longer than it is: the proxy would be out of sync.
    audio = info.audio.model_copy(update={"duration": info.audio.duration + 0.1})
    skewed = info.model_copy(update={"streams": [info.video, audio]})
    with pytest.raises(MediaError, match="out of sync"):
        join_chunks(parts, skewed, track, params=JoinParams(), ctx=ctx)


def test_transcode_refuses_a_chunk_the_source_cannot_fill(ingested):
    from operators.media.transcode import TranscodeParams, transcode_chunk
    from operators.types import SourceRef

    ctx, (info, chunks, _, _, _) = ingested
    greedy = chunks[0].model_copy(update={"frame_count": chunks[0].frame_count + 1, "index": 7})
    with pytest.raises(MediaError, match=r"decoded to \d+ frames but the source holds"):
        transcode_chunk(SourceRef(path="s.mp4"), greedy, info, params=TranscodeParams(renditions=[120]), ctx=ctx)
    assert not ctx.storage.exists(ctx.output_path("chunks/120p/00007.mp4"))
