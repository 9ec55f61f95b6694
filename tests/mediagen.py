"""Tiny synthetic media for the media operator tests, made with PyAV's lavfi sources.

Everything is generated on the fly (no fixtures in git) and kept small — a couple of
seconds at 320x240 or less — so the whole media test suite stays fast on 2 cores.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

if TYPE_CHECKING:
    import numpy as np

__all__ = ["make_audio_only", "make_clip", "make_text", "make_truncated"]


def _lavfi_frames(spec: str):
    with av.open(spec, format="lavfi") as src:
        yield from src.decode(video=0) if src.streams.video else src.decode(audio=0)


def make_clip(
    path: str | Path,
    seconds: float = 2.0,
    size: tuple[int, int] = (320, 240),
    fps: str = "30000/1001",
    audio: bool = True,
    bframes: bool = True,
    gop: int = 30,
    rotation: int | None = None,
    vfr: bool = False,
    container: str = "mp4",
    sample_rate: int = 48000,
    faststart: bool = False,
) -> Path:
    """An H.264 (+AAC) clip of ``testsrc2`` (+ a 440 Hz sine).

    ``gop`` is the keyframe interval in frames (a GOP longer than the clip gives one
    keyframe), ``rotation`` writes a display matrix (counter-clockwise degrees),
    ``vfr`` stretches every third frame so the frame rate is variable, and ``faststart``
    puts the MP4 index (moov) before the media data, as uploads from phones and web tools have.
    """
    path = Path(path)
    width, height = size
    rate = Fraction(fps)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        vs = out.add_stream("libx264", rate=rate)
        # 4:2:0 needs even sizes, so an odd-sized source is 4:4:4 (as phones and screen grabs can be).
        pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        # A fine time base so the VFR timestamps below are representable exactly.
        # Keep our own copy: the muxer replaces the stream's time base when it writes the header.
        tb = Fraction(1, 90000) if vfr else 1 / rate
        vs.codec_context.time_base = tb
        vs.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": "3" if bframes else "0",
            "preset": "ultrafast" if not bframes else "superfast",
            "threads": "1",
        }
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = "stereo"
        spec = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
        pts = 0
        frame_ticks = int(tb.denominator / rate / tb.numerator) if vfr else 1
        for i, frame in enumerate(_lavfi_frames(spec)):
            frame = frame.reformat(format=pix_fmt)
            # lavfi marks every frame as an I picture, and libx264 honours a frame's pict_type.
            frame.pict_type = av.video.frame.PictureType.NONE
            frame.pts = pts
            frame.time_base = tb
            pts += frame_ticks * (2 if vfr and i % 3 == 2 else 1)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aus is not None:
            _mux_sine(out, aus, seconds, sample_rate)
    return path


def _mux_sine(out: Any, stream: Any, seconds: float, sample_rate: int) -> None:
    """Encode a 440 Hz sine of ``seconds`` into ``stream`` and flush the encoder."""
    pts = 0
    for frame in _lavfi_frames(f"sine=frequency=440:duration={seconds}:sample_rate={sample_rate}"):
        frame.pts = pts
        frame.time_base = Fraction(1, sample_rate)
        pts += frame.samples
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_audio_only(path: str | Path, seconds: float = 2.0, sample_rate: int = 44100, faststart: bool = False) -> Path:
    """An AAC-in-M4A file with a 440 Hz sine and no video (``faststart``: the index first)."""
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        aus = out.add_stream("aac", rate=sample_rate)
        aus.layout = "mono"
        _mux_sine(out, aus, seconds, sample_rate)
    return path


def make_truncated(path: str | Path, keep: float = 0.5, **clip_args) -> Path:
    """A clip cut off after ``keep`` of its bytes.

    With the moov atom at the end (the default) it is unreadable; with ``faststart=True`` it
    opens, and its index lists frames whose data is missing.
    """
    path = Path(path)
    make_clip(path, **clip_args)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_text(path: str | Path) -> Path:
    """A text file with a video extension."""
    path = Path(path)
    path.write_text("this is not a video, just some words in a file\n" * 20)
    return path


# --- helpers for tests that run the media operators on these files -----------------------


def media_ctx(root: str | Path, job_id: str = "job_test"):
    """An OpContext whose storage is ``root`` (a test's tmp_path)."""
    from operators.context import OpContext
    from operators.storage import Storage

    return OpContext(job_id=job_id, node="x", storage=Storage(str(root)))


def run_ingest(ctx, rel_path: str, target_seconds: float = 0.5, min_seconds: float = 0.2, renditions=(720,), audio: bool = True,
               audio_params=None):
    """probe → split → transcode each chunk → (audio) → join, as the graph wires them."""
    from operators.media.audio import AudioParams, transcode_audio
    from operators.media.chunks import SplitParams, split_keyframes
    from operators.media.join import JoinParams, join_chunks
    from operators.media.probe import probe
    from operators.media.transcode import TranscodeParams, transcode_chunk
    from operators.types import SourceRef

    source = SourceRef(path=rel_path)
    info = probe(source, ctx=ctx)
    chunks = split_keyframes(
        source, info, params=SplitParams(target_seconds=target_seconds, min_seconds=min_seconds), ctx=ctx
    )
    params = TranscodeParams(renditions=list(renditions), preset="ultrafast", encode_threads=1, decode_threads=1)
    parts = [transcode_chunk(source, c, info, params=params, ctx=ctx) for c in chunks]
    track = transcode_audio(source, info, params=audio_params or AudioParams(), ctx=ctx) if audio else None
    proxies = join_chunks(parts, info, track, params=JoinParams(), ctx=ctx)
    return info, chunks, parts, track, proxies


# --- frame-index sources: every frame shows its own number, for frame-exactness checks ---------

INDEX_BITS = 10
INDEX_SIZE = (160, 96)


def indexed_frame(i: int, width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame that shows ``i`` in :data:`INDEX_BITS` binary bars (white 1, black 0), grey chroma."""
    buffer = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    bar = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        buffer[:height, bit * bar:(bit + 1) * bar] = 235 if (i >> bit) & 1 else 16
    return av.VideoFrame.from_ndarray(buffer, format="yuv420p")


def make_indexed_clip(path: str | Path, frames: int, fps: str = "30", size: tuple[int, int] = INDEX_SIZE,
                      audio: bool = False, rotation: int | None = None) -> Path:
    """An H.264 clip whose frame ``i`` shows ``i`` in binary: ``INDEX_BITS`` black/white bars.

    Bars are whole-frame-high and 16 px wide, in luma only, so they survive x264 at any
    scale the renderer picks; :func:`read_index` reads them back.
    """

    path = Path(path)
    width, height = size
    rate = Fraction(fps)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = 1 / rate
        vs.options = {"g": "12", "bf": "2", "preset": "ultrafast", "crf": "12", "threads": "1"}
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:  # every stream is added before the first packet is written
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "stereo"
        for i in range(frames):
            frame = indexed_frame(i, width, height)
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if aus is not None:
            _mux_sine(out, aus, frames / float(rate), 48000)
    return path


def read_index(gray: np.ndarray) -> int:
    """The number a frame of :func:`make_indexed_clip` shows, from its luma (any size)."""
    height, width = gray.shape[:2]
    bar = width / INDEX_BITS
    row = gray[height // 2]
    return sum(1 << bit for bit in range(INDEX_BITS) if row[int((bit + 0.5) * bar)] > 128)


def make_recorder_webm(path: str | Path, seconds: float = 3.0, size: tuple[int, int] = (160, 120),
                       fps: int = 30) -> Path:
    """A WebM as a browser's MediaRecorder writes it: VP9 + Opus muxed live (``live=1``), so it has no duration
    and no cues, as a file written while it records cannot have."""
    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as out:
        vs = out.add_stream("libvpx-vp9", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"deadline": "realtime", "cpu-used": "8"}
        aus = out.add_stream("libopus", rate=48000)
        aus.layout = "stereo"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 3) % 256, np.uint8), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        t = np.arange(round(48000 * seconds)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, tone.size, 960):
            chunk = tone[start:start + 960]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            for packet in aus.encode(frame):
                out.mux(packet)
        for stream in (vs, aus):
            for packet in stream.encode():
                out.mux(packet)
    return path


# --- sources for the render's reading of awkward files (issue 19) ------------------------------


def make_indexed_gop_clip(path: str | Path, frames: int, fps: str = "25", gop: int = 12, container: str = "mp4",
                          size: tuple[int, int] = INDEX_SIZE) -> Path:
    """:func:`make_indexed_clip`'s frames with a chosen keyframe interval and container (``gop`` longer than
    the clip: one keyframe, as some TS recordings have)."""
    path = Path(path)
    width, height = size
    rate = Fraction(fps)
    with av.open(str(path), "w", format=container) as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = 1 / rate
        vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2", "preset": "ultrafast",
                      "crf": "12", "threads": "1"}
        for i in range(frames):
            frame = indexed_frame(i, width, height)
            frame.pts, frame.time_base = i, 1 / rate
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def make_anamorphic_clip(path: str | Path, frames: int = 10, side: int = 288) -> Path:
    """A 720x576 PAL widescreen clip (SAR 64:45, shown 1024x576) of a white square ``side`` shown pixels wide
    on black: coded, it is ``side * 45 / 64`` pixels wide and ``side`` high."""
    path = Path(path)
    width, height, sar = 720, 576, Fraction(64, 45)
    coded_w = round(side / sar)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.sample_aspect_ratio = sar
        vs.options = {"preset": "ultrafast", "crf": "18", "threads": "1"}
        rgb = np.zeros((height, width, 3), np.uint8)
        x0, y0 = (width - coded_w) // 2, (height - side) // 2
        rgb[y0:y0 + side, x0:x0 + coded_w] = 255
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def interlaced_picture(i: int, size: tuple[int, int] = (320, 240), step: int = 6) -> np.ndarray:
    """Frame ``i`` of an interlaced scene: diagonal stripes moving ``step`` pixels a field, the top field
    (even lines) from the frame's first instant and the bottom field from half a frame later (gray)."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    top = ((xs + ys - 2 * i * step) // 12 % 2) * 180 + 40
    bottom = ((xs + ys - (2 * i + 1) * step) // 12 % 2) * 180 + 40
    return np.where(ys % 2 == 0, top, bottom).astype(np.uint8)


def make_interlaced_clip(path: str | Path, frames: int = 25, size: tuple[int, int] = (320, 240)) -> Path:
    """An interlaced (top field first) H.264 clip of :func:`interlaced_picture`: the fields differ."""
    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "16", "threads": "1", "flags": "+ildct+ilme",
                      "x264-params": "interlaced=1:tff=1"}
        for i in range(frames):
            gray = interlaced_picture(i, size)
            buffer = np.concatenate([gray, np.full((height // 2, width), 128, np.uint8)])
            frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def combing(gray: np.ndarray) -> float:
    """How combed a picture is: the energy of differences between adjacent lines over that of lines two apart
    (about 0.3-0.5 for a smooth progressive picture, well above 1 where the two fields disagree)."""
    y = gray.astype(np.float64)
    near = ((y[1:-1] - y[:-2]) ** 2).mean()
    far = ((y[2:] - y[:-2]) ** 2).mean()
    return float(near / max(far, 1e-9))


def damage_mdat(path: str | Path, size: int = 64 * 1024, seed: int = 7) -> Path:
    """Overwrite ``size`` bytes in the middle of an MP4's ``mdat`` with random bytes, leaving the index (moov)
    as it was: the packets there are garbage the index still points at."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    at = 0
    while at + 8 <= len(data):
        box, kind = int.from_bytes(data[at:at + 4], "big"), bytes(data[at + 4:at + 8])
        if kind == b"mdat":
            break
        at += box
    else:
        raise ValueError(f"{path} has no mdat box")
    middle = at + box // 2 - size // 2
    assert at + 8 <= middle and middle + size <= at + box, "the mdat is smaller than the damage"
    data[middle:middle + size] = np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path
