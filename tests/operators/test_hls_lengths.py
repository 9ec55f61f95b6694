"""HLS packages of ordinary lengths complete, and their picture and sound start together (issue 19, item 4).

A plain 48 kHz AAC source failed the package's own check at 5, 6, 7.3 and 15 s ("the audio variant
lasts 6.037s, the source 6.000s"): AAC ends on whole 1024-sample frames after 1024 samples of
encoder priming. And in the package the video started 0.08 s after the audio (B-frames), which
hls.js reports as bufferSeekOverHole. The export operators are called directly on tiny media
(160x120 testsrc2 and a sine, 48 kHz AAC), and the package is read the way players read it: the
init segment's edit lists and the first media segment's ``tfdt`` and composition offsets.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from operators.errors import MediaError
from operators.export.audio import AudioParams, encode_audio
from operators.export.encode import encode_chunk
from operators.export.hls import HlsOutput, HlsParams, VariantOutput, hls_package, hls_variant
from operators.export.plan import PlanParams, export_plan
from operators.export.presets import ExportPresets
from operators.media.info import MediaInfo
from operators.media.probe import probe
from operators.types import SourceRef, StoredFile
from tests.mediagen import make_clip, media_ctx

RATE = 48000
AAC_FRAME = 1024 / RATE


def _package(root: Path, seconds: float, fps: str = "30", encoder: str = "ultrafast",
             ladder: tuple[int, ...] = (120,)) -> tuple[Any, MediaInfo, HlsOutput, list[VariantOutput], Any]:
    """An HLS package of a ``seconds`` clip, made by the export operators as the graph wires them."""
    ctx = media_ctx(root)
    make_clip(root / "clip.mp4", seconds=seconds, size=(160, 120), fps=fps, sample_rate=RATE)
    source = SourceRef(path="clip.mp4")
    info = probe(source, ctx=ctx)
    preset = {"name": "hls", "base": "hls", "ladder": list(ladder), "segment_seconds": 2, "gop_seconds": 1,
              "encoder_preset": encoder}
    plan = export_plan(source, info, ExportPresets.model_validate([preset]), params=PlanParams(), ctx=ctx)
    parts = [encode_chunk(source, task, info, ctx=ctx) for task in plan.video_tasks]
    tracks = [encode_audio(source, info, a, None, None, params=AudioParams(), ctx=ctx) for a in plan.audio]
    variants = [hls_variant(v, parts, tracks, info, params=HlsParams(verify_decode="first"), ctx=ctx)
                for v in plan.hls_variants]
    return ctx, info, hls_package(plan.hls[0], variants, info, ctx=ctx), variants, tracks[0]


@pytest.mark.parametrize("seconds", [*range(3, 17), 7.3])
def test_hls_of_every_ordinary_length_completes_and_passes_its_own_check(tmp_path: Path, seconds: float) -> None:
    ctx, info, out, variants, track = _package(tmp_path, seconds)
    assert info.audio is not None and abs(info.audio.duration - seconds) < 1e-3
    assert out.master.meta["audio"] and abs(out.master.meta["duration"] - seconds) < 1e-3
    (video,) = [v for v in variants if v.rendition is not None]
    (audio,) = [v for v in variants if v.rendition is None]
    assert video.frames == round(seconds * 30)
    # From its first audible sample the rendition holds the sound, ending on a whole AAC frame...
    priming = _priming(ctx, track)
    assert -1e-3 <= audio.duration - priming - seconds <= AAC_FRAME + 1e-3, audio.duration
    # ...and that sample plays with the first frame, as the segments' own times say.
    starts = _starts(ctx, out)
    assert abs(starts["audio"][0] + priming - starts["120p"][0]) < 1e-3, starts


# --- the package as players read it --------------------------------------------------------------


def _boxes(data: bytes) -> dict[bytes, list[bytes]]:
    """Top-level boxes by type: their payloads."""
    out: dict[bytes, list[bytes]] = {}
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        out.setdefault(kind, []).append(data[at + head:at + (size or len(data) - at)])
        at += size or len(data)
    return out


def _box(data: bytes, *path: bytes) -> bytes | None:
    for kind in path:
        found = _boxes(data).get(kind)
        if not found:
            return None
        data = found[0]
    return data


def _first_pts(init: bytes, segment: bytes) -> tuple[float, float]:
    """The first presentation time of a one-track fMP4 (seconds): as tfdt and trun give it (hls.js, MSE),
    and after the init segment's edit list (Safari)."""
    mdhd = _box(init, b"moov", b"trak", b"mdia", b"mdhd")
    mvhd = _box(init, b"moov", b"mvhd")
    assert mdhd is not None and mvhd is not None
    timescale = struct.unpack(">I", mdhd[12:16] if mdhd[0] == 0 else mdhd[20:24])[0]
    movie_scale = struct.unpack(">I", mvhd[12:16] if mvhd[0] == 0 else mvhd[20:24])[0]
    tfdt = _box(segment, b"moof", b"traf", b"tfdt")
    tfhd = _box(segment, b"moof", b"traf", b"tfhd")
    trun = _box(segment, b"moof", b"traf", b"trun")
    assert tfdt is not None and tfhd is not None and trun is not None
    dts = struct.unpack(">Q", tfdt[4:12])[0] if tfdt[0] == 1 else struct.unpack(">I", tfdt[4:8])[0]
    flags = int.from_bytes(tfhd[1:4], "big")
    default = struct.unpack(">I", tfhd[8 + 8 * bool(flags & 1) + 4 * bool(flags & 2):][:4])[0] if flags & 8 else 0
    version, run_flags, count = trun[0], int.from_bytes(trun[1:4], "big"), struct.unpack(">I", trun[4:8])[0]
    at = 8 + 4 * bool(run_flags & 1) + 4 * bool(run_flags & 4)
    shown = []
    for _ in range(count):
        duration, offset = default, 0
        if run_flags & 0x100:
            duration, at = struct.unpack(">I", trun[at:at + 4])[0], at + 4
        at += 4 * bool(run_flags & 0x200) + 4 * bool(run_flags & 0x400)
        if run_flags & 0x800:
            offset, at = struct.unpack(">i" if version else ">I", trun[at:at + 4])[0], at + 4
        shown.append(dts + offset)
        dts += duration
    raw = min(shown) / timescale
    edited = raw
    elst = _box(init, b"moov", b"trak", b"edts", b"elst")
    if elst is not None:
        wide, entries, at = elst[0] == 1, struct.unpack(">I", elst[4:8])[0], 8
        for _ in range(entries):
            span, media = struct.unpack(">Qq" if wide else ">Ii", elst[at:at + (16 if wide else 8)])
            at += (16 if wide else 8) + 4
            if media == -1:
                edited += span / movie_scale
            else:
                edited -= media / timescale
                break
    return raw, edited


def _starts(ctx: Any, out: HlsOutput) -> dict[str, tuple[float, float]]:
    """Each variant's first presentation time (folder name: both readings), from its init and first segment."""
    files = {str(f.meta["uri"]): ctx.storage.local_path(f.path) for f in out.files}
    firsts = [uri for uri in files if uri.endswith("/seg_00000.m4s")]
    return {uri.split("/")[0]: _first_pts(files[uri.replace("seg_00000.m4s", "init.mp4")].read_bytes(),
                                          files[uri].read_bytes()) for uri in firsts}


def _priming(ctx: Any, track: Any) -> float:
    """The AAC track's encoder priming: its leading packets that the demuxer marks to discard (seconds)."""
    with av.open(str(ctx.storage.local_path(track.file.path))) as c:
        stream = c.streams.audio[0]
        packets = [p for p in c.demux(stream) if p.size]
    lead = next(i for i, p in enumerate(packets) if not p.is_discard)
    return float((packets[lead].pts - packets[0].pts) * stream.time_base)


@pytest.mark.parametrize(("fps", "encoder"), [("25", "veryfast"), ("30", "ultrafast"), ("60", "ultrafast")])
def test_the_first_frame_and_the_first_audible_sample_play_together_in_every_player(
        tmp_path: Path, fps: str, encoder: str) -> None:
    # veryfast: B-frames, so the video decodes two frames before it shows; ultrafast: none, so the
    # AAC priming (21.3 ms) is the larger lead; at 60 fps that is more than a frame.
    ctx, _, out, _, track = _package(tmp_path, 4.0, fps, encoder, ladder=(120, 96))
    starts = _starts(ctx, out)
    assert set(starts) == {"120p", "96p", "audio"}
    for name, (raw, edited) in starts.items():
        assert raw == pytest.approx(edited, abs=1e-6), f"{name}: an edit list moves it in Safari but not in hls.js"
    frame = 1 / float(Fraction(fps))
    video, audio, priming = starts["120p"][0], starts["audio"][0], _priming(ctx, track)
    assert starts["96p"][0] == pytest.approx(video, abs=1e-6)
    assert priming == pytest.approx(AAC_FRAME, abs=1e-6)
    # The first audible sample shows with the first frame; the priming plays just before, never after.
    assert abs(audio + priming - video) < 1e-3, (audio, priming, video)
    assert 0 <= video - audio <= priming + 1e-3
    if frame > priming:
        assert abs(video - audio) < frame  # the segments' first times too, within one frame
    assert out.master.meta["start"] == pytest.approx(video, abs=1e-6)


def test_a_package_whose_sound_starts_a_frame_off_its_picture_is_refused_saying_so(tmp_path: Path) -> None:
    from tests.operators.test_export_ops import _chunks, _info, _presets
    from operators.export.plan import plan_export

    info = _info(640, 360, fps="25", seconds=4.0)
    plan = plan_export(info, _presets({"name": "hls", "ladder": [360], "segment_seconds": 2}), _chunks(info, 1))
    package = plan.hls[0]
    (rung,) = package.renditions

    def variant(start: float, audio: bool = False) -> VariantOutput:
        return VariantOutput(package="hls", index=1 if audio else 0, name="audio" if audio else "360p",
                             rendition=None if audio else rung, codec="mp4a.40.2" if audio else "avc1.64001E",
                             files=[StoredFile(path="x", kind="hls_segment", content_type="v", size=1)],
                             segments=[(2.0, 1000), (2.0, 1000)], starts=[0.0, 2.0], keyframes=[0.0, 2.0],
                             frames=rung.frames, start=start)

    ctx = media_ctx(tmp_path)
    with pytest.raises(MediaError, match="The HLS audio rendition starts 80 ms before the video"):
        hls_package(package, [variant(0.08), variant(0.0, audio=True)], info, ctx=ctx)
    out = hls_package(package, [variant(0.08), variant(0.09, audio=True)], info, ctx=ctx)
    assert out.master.meta["start"] == 0.08
