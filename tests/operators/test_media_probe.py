"""media.probe on small generated clips, and readable errors for files that are not media."""

from __future__ import annotations

import pytest

from operators import MediaError, SourceRef, get_operator
from operators.media.probe import probe
from tests.mediagen import make_audio_only, make_clip, make_text, make_truncated, media_ctx


def test_media_operators_are_registered():
    names = [
        "media.probe",
        "media.split_keyframes",
        "media.transcode_chunk",
        "media.transcode_audio",
        "media.join_chunks",
        "media.poster",
        "media.sprite",
        "media.extract_audio",
        "media.waveform",
    ]
    for name in names:
        spec = get_operator(name)
        assert spec.wants_ctx, name
    assert get_operator("media.join_chunks").optional_inputs == {"audio"}
    assert get_operator("media.transcode_chunk").required_inputs == {"source", "chunk", "info"}


def test_probe_2997_with_b_frames_and_audio(tmp_path):
    make_clip(tmp_path / "a.mp4", seconds=2, fps="30000/1001", bframes=True)
    info = probe(SourceRef(path="a.mp4"), ctx=media_ctx(tmp_path))
    assert info.format.startswith("mov,mp4")
    assert info.size == (tmp_path / "a.mp4").stat().st_size
    assert info.duration == pytest.approx(2.0, abs=0.05)
    v, a = info.video, info.audio
    assert v is not None and a is not None
    assert (v.codec, v.width, v.height, v.pix_fmt) == ("h264", 320, 240, "yuv420p")
    assert (v.display_width, v.display_height, v.rotation) == (320, 240, 0)
    assert v.fps_fraction == "30000/1001"
    assert v.fps == pytest.approx(29.97, abs=0.001)
    assert v.frame_count == 60
    assert v.has_b_frames is True
    assert v.is_vfr is False
    assert v.time_base == "1/30000"
    assert v.duration == pytest.approx(60 * 1001 / 30000)
    assert (a.codec, a.sample_rate, a.channels, a.layout) == ("aac", 48000, 2, "stereo")
    assert a.duration == pytest.approx(2.0, abs=0.03)
    assert info.model_dump(mode="json")["streams"][0]["type"] == "video"


def test_probe_no_b_frames_odd_size(tmp_path):
    make_clip(tmp_path / "odd.mp4", seconds=1, size=(321, 241), fps="25", bframes=False, audio=False)
    info = probe(SourceRef(path="odd.mp4"), ctx=media_ctx(tmp_path))
    assert info.audio is None
    assert (info.video.width, info.video.height) == (321, 241)
    assert info.video.frame_count == 25
    assert info.video.has_b_frames is False
    assert info.video.fps_fraction == "25/1"


def test_probe_rotation_swaps_display_size(tmp_path):
    make_clip(tmp_path / "r.mp4", seconds=1, rotation=90, audio=False)
    v = probe(SourceRef(path="r.mp4"), ctx=media_ctx(tmp_path)).video
    assert v.rotation == 90
    assert (v.width, v.height) == (320, 240)
    assert (v.display_width, v.display_height) == (240, 320)


def test_probe_detects_vfr(tmp_path):
    make_clip(tmp_path / "vfr.mp4", seconds=2, vfr=True, audio=False)
    v = probe(SourceRef(path="vfr.mp4"), ctx=media_ctx(tmp_path)).video
    assert v.is_vfr is True
    assert v.frame_count == 60
    assert v.avg_frame_rate != v.real_frame_rate
    # 19 of the 59 gaps between frames are doubled, plus the last frame: 79 slots of 1001/30000 s.
    assert v.duration == pytest.approx(79 * 1001 / 30000)


def test_probe_audio_only(tmp_path):
    make_audio_only(tmp_path / "a.m4a", seconds=1.5)
    info = probe(SourceRef(path="a.m4a"), ctx=media_ctx(tmp_path))
    assert info.video is None
    assert info.audio.sample_rate == 44100 and info.audio.channels == 1
    assert info.audio.duration == pytest.approx(1.5, abs=0.03)


def test_probe_truncated_file_has_readable_error(tmp_path):
    make_truncated(tmp_path / "t.mp4")
    with pytest.raises(MediaError, match=r"truncated or corrupt \(moov atom not found\)"):
        probe(SourceRef(path="t.mp4"), ctx=media_ctx(tmp_path))


@pytest.mark.parametrize("name", ["notes.mp4", "notes.txt"])
def test_probe_text_file_is_not_media(tmp_path, name):
    make_text(tmp_path / name)
    with pytest.raises(MediaError, match="could not be read as media: it looks like a text file"):
        probe(SourceRef(path=name), ctx=media_ctx(tmp_path))


def test_probe_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="could not be read as media: the file is empty"):
        probe(SourceRef(path="empty.mp4"), ctx=media_ctx(tmp_path))


def test_probe_faststart_file_cut_short_is_truncated(tmp_path):
    import av

    make_clip(tmp_path / "a.mp4", seconds=2, audio=False)
    # Remux with the index first, then cut: the header opens fine but frames are missing.
    with av.open(str(tmp_path / "a.mp4")) as src, av.open(
        str(tmp_path / "fs.mp4"), "w", options={"movflags": "+faststart"}
    ) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "fs.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated"):
        probe(SourceRef(path="fs.mp4"), ctx=media_ctx(tmp_path))
