"""Poster, sprite sheet, 16 kHz WAV and waveform peaks."""

from __future__ import annotations

import json
import wave

import av
import numpy as np
import pytest

from operators import MediaError, SourceRef
from operators.media.audio import ExtractAudioParams, WaveformParams, extract_audio, waveform
from operators.media.probe import probe
from operators.media.chunks import SplitParams, split_keyframes
from operators.media.thumbnails import (
    PosterParams,
    SheetParams,
    SpriteParams,
    TileParams,
    poster,
    sprite,
    sprite_sheet,
)
from operators.media.transcode import TranscodeParams, transcode_chunk
from tests.mediagen import make_audio_only, make_clip, media_ctx


def _decode_jpeg(path) -> np.ndarray:
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg"
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("stills")
    make_clip(root / "c.mp4", seconds=2, gop=15)
    ctx = media_ctx(root)
    return root, ctx, probe(SourceRef(path="c.mp4"), ctx=ctx)


def test_poster_is_a_jpeg_at_the_asked_height(clip):
    root, ctx, info = clip
    out = poster(SourceRef(path="c.mp4"), info, params=PosterParams(height=120), ctx=ctx)
    assert out.kind == "poster" and out.content_type == "image/jpeg"
    image = _decode_jpeg(root / out.path)
    assert image.shape == (120, 160, 3)
    assert (out.meta["width"], out.meta["height"]) == (160, 120)
    assert out.meta["at_seconds"] == pytest.approx(0.2, abs=0.01)
    assert image.std() > 20  # a picture, not a flat or black frame


def test_poster_is_upright_for_rotated_source(tmp_path):
    make_clip(tmp_path / "r.mp4", seconds=1, rotation=90, audio=False)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="r.mp4"), ctx=ctx)
    out = poster(SourceRef(path="r.mp4"), info, params=PosterParams(at_seconds=0.5), ctx=ctx)
    assert _decode_jpeg(tmp_path / out.path).shape == (320, 240, 3)


def test_poster_takes_the_frame_at_the_time(clip):
    # testsrc2 changes every frame: posters at different times must differ, the same time must not.
    root, ctx, info = clip
    a = _decode_jpeg(root / poster(SourceRef(path="c.mp4"), info, params=PosterParams(at_seconds=0.5, height=120), ctx=ctx).path)
    b = _decode_jpeg(root / poster(SourceRef(path="c.mp4"), info, params=PosterParams(at_seconds=1.5, height=120), ctx=ctx).path)
    c = _decode_jpeg(root / poster(SourceRef(path="c.mp4"), info, params=PosterParams(at_seconds=0.5, height=120), ctx=ctx).path)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5
    assert np.array_equal(a, c)


@pytest.mark.parametrize("exact", [False, True])
def test_sprite_sheet_layout(clip, exact):
    root, ctx, info = clip
    params = SpriteParams(interval_seconds=0.5, tile_width=64, columns=3, exact=exact)
    out = sprite(SourceRef(path="c.mp4"), info, params=params, ctx=ctx)
    assert out.kind == "sprite"
    m = out.meta
    assert (m["count"], m["columns"], m["rows"], m["tile_width"], m["tile_height"]) == (5, 3, 2, 64, 48)
    image = _decode_jpeg(root / out.path)
    assert image.shape == (2 * 48, 3 * 64, 3)
    tiles = [image[r * 48 : (r + 1) * 48, c * 64 : (c + 1) * 64] for r in range(2) for c in range(3)]
    # Different moments give different tiles; the unused sixth slot stays black.
    assert np.abs(tiles[0].astype(int) - tiles[2].astype(int)).mean() > 5
    assert tiles[5].mean() < 10


def _chunk_tiles(root, name, tiles: TileParams, target_seconds=0.6, min_seconds=0.2):
    """probe → split → transcode every chunk with sprite tiles, as the ingest graph does."""
    ctx = media_ctx(root)
    source = SourceRef(path=name)
    info = probe(source, ctx=ctx)
    chunks = split_keyframes(source, info, params=SplitParams(target_seconds=target_seconds, min_seconds=min_seconds),
                             ctx=ctx)
    params = TranscodeParams(renditions=[120], preset="ultrafast", encode_threads=1, decode_threads=1, sprite=tiles)
    return ctx, info, chunks, [transcode_chunk(source, c, info, params=params, ctx=ctx) for c in chunks]


def test_sprite_sheet_from_chunks_is_the_exact_sprite(tmp_path):
    # A 2 s GOP longer than the clip, so chunks start mid-GOP, and 29.97 fps, so most tile
    # times fall between two frames: each tile must still be the frame on screen at its time,
    # the one sprite(exact=True) seeks to, taken by exactly one chunk.
    make_clip(tmp_path / "c.mp4", seconds=2.5, gop=60)
    tiles = TileParams(interval_seconds=0.3, tile_width=64)
    ctx, info, chunks, parts = _chunk_tiles(tmp_path, "c.mp4", tiles)
    assert len(chunks) >= 3 and not all(c.keyframe_aligned for c in chunks)
    indexes = sorted(t.index for p in parts for t in p.thumbnails.tiles)
    assert indexes == list(range(9))  # ceil(2.5 / 0.3): each tile once
    sheet = sprite_sheet(parts, info, params=SheetParams(columns=4), ctx=ctx)
    sheet_bytes = (tmp_path / sheet.path).read_bytes()
    reference = sprite(SourceRef(path="c.mp4"), info, params=SpriteParams(**tiles.model_dump(), columns=4, exact=True),
                       ctx=ctx)
    assert sheet.meta == reference.meta
    assert (sheet.meta["count"], sheet.meta["columns"], sheet.meta["rows"], sheet.meta["exact"]) == (9, 4, 3, True)
    # Same frames, same scaling, same JPEG encoder: the same file, byte for byte.
    assert sheet_bytes == (tmp_path / reference.path).read_bytes()


def test_sprite_sheet_from_chunks_is_upright_for_rotated_source(tmp_path):
    make_clip(tmp_path / "r.mp4", seconds=1, rotation=90, audio=False)
    ctx, info, _, parts = _chunk_tiles(tmp_path, "r.mp4", TileParams(interval_seconds=0.5, tile_width=60),
                                       target_seconds=0.5)
    out = sprite_sheet(parts, info, params=SheetParams(), ctx=ctx)
    # 30 frames at 29.97 fps last 1.001 s: tiles at 0, 0.5 and 1.0 s.
    assert (out.meta["tile_width"], out.meta["tile_height"], out.meta["count"]) == (60, 80, 3)
    assert _decode_jpeg(tmp_path / out.path).shape == (80, 3 * 60, 3)


def test_sprite_sheet_refuses_missing_or_mismatched_tiles(tmp_path):
    make_clip(tmp_path / "c.mp4", seconds=1.5, gop=15)
    ctx, info, _, parts = _chunk_tiles(tmp_path, "c.mp4", TileParams(interval_seconds=0.25, tile_width=32),
                                       target_seconds=0.5)
    assert len(parts) >= 2
    with pytest.raises(MediaError, match="left sprite tiles"):
        sprite_sheet(parts[1:], info, params=SheetParams(), ctx=ctx)
    with pytest.raises(MediaError, match="duplicated"):
        sprite_sheet([*parts, parts[0]], info, params=SheetParams(), ctx=ctx)
    thumbs = parts[0].thumbnails
    wider = thumbs.model_copy(update={"layout": thumbs.layout.model_copy(update={"tile_width": 64})})
    other = parts[0].model_copy(update={"thumbnails": wider})
    with pytest.raises(MediaError, match="different sprite settings"):
        sprite_sheet([other, *parts[1:]], info, params=SheetParams(), ctx=ctx)
    without = [p.model_copy(update={"thumbnails": None}) for p in parts]
    with pytest.raises(MediaError, match="no sprite tiles"):
        sprite_sheet(without, info, params=SheetParams(), ctx=ctx)


def test_sprite_sheet_of_an_audio_only_source_is_null(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=1.0)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="a.m4a"), ctx=ctx)
    assert sprite_sheet([], info, params=SheetParams(), ctx=ctx) is None


def test_extract_audio_is_16k_mono_wav(clip):
    root, ctx, info = clip
    out = extract_audio(SourceRef(path="c.mp4"), info, params=ExtractAudioParams(), ctx=ctx)
    assert out.kind == "audio" and out.content_type == "audio/wav"
    with wave.open(str(root / out.path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert abs(len(samples) / 16000 - 2.0) < 0.03
    assert out.meta["duration"] == pytest.approx(len(samples) / 16000)
    # The 440 Hz sine is there: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(samples[:16000].astype(float)))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_extract_audio_without_audio(tmp_path):
    make_clip(tmp_path / "s.mp4", seconds=0.5, audio=False)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="s.mp4"), ctx=ctx)
    assert extract_audio(SourceRef(path="s.mp4"), info, params=ExtractAudioParams(), ctx=ctx) is None
    with pytest.raises(MediaError, match="The source has no audio stream"):
        extract_audio(SourceRef(path="s.mp4"), info, params=ExtractAudioParams(require=True), ctx=ctx)


def test_waveform_peaks(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=1.0)
    ctx = media_ctx(tmp_path)
    info = probe(SourceRef(path="a.m4a"), ctx=ctx)
    wav = extract_audio(SourceRef(path="a.m4a"), info, params=ExtractAudioParams(), ctx=ctx)
    out = waveform(wav, params=WaveformParams(peaks_per_second=50), ctx=ctx)
    assert out.kind == "waveform" and out.content_type == "application/json"
    doc = json.loads((tmp_path / out.path).read_text())
    assert doc["sample_rate"] == 16000 and doc["peaks_per_second"] == 50
    assert abs(doc["length"] - 50) <= 2
    data = np.array(doc["data"])
    assert len(data) == 2 * doc["length"]
    lo, hi = data[0::2], data[1::2]
    assert (lo <= hi).all() and lo.min() >= -1 and hi.max() <= 1
    # lavfi's sine is at 1/8 full scale: peaks near ±0.125 in the middle of the clip.
    assert np.median(hi[5:-5]) == pytest.approx(0.125, abs=0.02)
    assert np.median(lo[5:-5]) == pytest.approx(-0.125, abs=0.02)


def test_waveform_of_nothing_is_nothing(tmp_path):
    assert waveform(None, params=WaveformParams(), ctx=media_ctx(tmp_path)) is None
