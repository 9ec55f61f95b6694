"""Render benchmark: the ``render`` job, POST to completed, against one ffmpeg CLI command and MoviePy 2.

Run: ``.venv/bin/python bench/render.py [--workers 2,1] [--runs 1] [--keep-tmp]``
Environment: ``BENCH_SECONDS`` (default 60: source and output length), ``BENCH_HEIGHT`` (default 1920: output
height; the output is 9:16, the source 16:9 at ``BENCH_HEIGHT * 9 / 16``, so 1920 gives a 1080p source and a
1080x1920 render), ``BENCH_SKIP_MOVIEPY=1`` (leave out MoviePy, the slow one). Smoke run:
``BENCH_SECONDS=6 BENCH_HEIGHT=640 .venv/bin/python bench/render.py``.

The edit (the same for every contender, built by :func:`make_edit`):

- source: ingest's generated clip (``ingest.make_source``: testsrc2 + a 440 Hz sine, H.264/AAC, 2 s GOP),
  ``BENCH_SECONDS`` long; music: a second generated AAC file (220 Hz + 330 Hz tones over pink noise);
- canvas 9:16 at 30 fps; 7 clips of the source (6 cuts), ~9 s each, taken out of order from different source
  ranges, joined by 0.5 s crossfades (``transition: {type: fade}``; the clips' sound crossfades too), so the
  whole is ``BENCH_SECONDS`` long; each clip ``fit: cover`` with an off-centre crop {x 0.3, w 0.316, h 1};
- a title (text track, first 3 s, size 96, top); word-highlight captions from a transcript asset the benchmark
  writes (``operators.speech.models.Transcript`` JSON, 2.5 words/s over the source), registered as an asset of
  kind ``transcript``; music at -18 dB.

Contenders, in the same run, with the same output settings (libx264 veryfast crf 23 with a 2 s GOP, which is
the render's ``gop_seconds``; AAC 192 kb/s 48 kHz stereo; faststart MP4):

- **product**: ``POST /jobs/?job_type=render`` with ``{"project_id", "timeline", "output": {"preset":
  "veryfast", "crf": 23}}``, then ``GET /jobs/{id}`` (10 ms, slowing to 100 ms) until ``completed``, on a
  server (``common.ServerProcess``) with a LocalCluster of 2 single-thread workers, then of 1. The assets are
  uploaded with ``POST /assets/`` before (the transcript's record is then given ``kind: transcript`` through
  the server's embedded Redis: the API has no other way to make one but a transcribe job), and a small render
  warms the workers up. CPU: the server's whole process tree (main process: HTTP, dispatcher, Dask
  scheduler; children: the Dask workers, which do the work, and redis-server).
- **ffmpeg**: one ``ffmpeg -filter_complex_script`` command: each clip its own input (``-ss`` before ``-i``,
  so it decodes from the keyframe before its in point, as the render does), ``trim``/``atrim`` +
  ``setpts``, ``crop``, ``scale``, ``xfade=transition=fade`` and ``acrossfade`` chains, the title and every
  caption state as a PNG overlaid with ``overlay=enable='between(t,a,b)'``, the music with ``volume=-18dB``
  mixed in with ``amix``. The PNGs are the product's own pictures (``render.plan``'s overlays, drawn with
  ``operators.render.text.rasterize`` and placed with ``anchor``), made beforehand and not timed. CPU: the
  child's rusage. Run right before each product run, so both see the same load.
- **moviepy**: ``bench/render_moviepy.py`` in its own venv (``bench/out/venv-moviepy``, made on first use with
  ``python3 -m venv`` and ``pip install "moviepy>=2,<3"``; MoviePy runs imageio-ffmpeg's ffmpeg), the same
  edit from the same manifest: ``subclipped``/``cropped``/``resized`` clips with ``CrossFadeIn`` and audio
  fades, a ``TextClip`` title in the font the product draws with (Pillow's bundled one, written out as a TTF),
  the caption PNGs as ``ImageClip``s. Once, after the servers are stopped. CPU: the child's rusage (the
  ffmpeg processes MoviePy starts are counted when MoviePy waits for them).

Each output is checked by decoding it completely (PyAV): frame count (1800 for 60 s; the product must hit it
exactly), size, video and audio duration, decode errors, faststart; and a few frames (the middle of each clip,
of each crossfade and of the title) are compared with the ffmpeg output's (PSNR of the luma).

Output: ``bench/out/render.json`` (other sizes: ``render_<seconds>s_<height>.json``); the rendered files stay
in ``bench/out/render/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH_DIR,
    OUT_DIR,
    ROOT,
    ServerProcess,
    machine_info,
    print_table,
    write_json,
)
from ingest import MEDIA_DIR, busy_cpu_s, ffmpeg_bin, make_source, timed_job  # noqa: E402

sys.path.insert(0, str(ROOT))

FPS = 30
TRANSITION_FRAMES = 15  # 0.5 s at 30 fps
CLIPS = 7
#: Which seventh of the source each clip comes from, in timeline order: cuts that jump back and forth.
ORDER = (3, 0, 5, 1, 6, 2, 4)
CROP = {"x": 0.3, "y": 0.0, "width": 0.316, "height": 1.0}
TITLE = "Render benchmark"
TITLE_SECONDS = 3
AUDIO_BITRATE = 192000
CRF, PRESET, GOP_SECONDS = 23, "veryfast", 2.0
PROJECT = "bench"
RENDER_DIR = OUT_DIR / "render"
MOVIEPY_VENV = OUT_DIR / "venv-moviepy"
MOVIEPY_SPEC = "moviepy>=2,<3"
WORDS = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell."
).split()


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# -- the edit ----------------------------------------------------------------------------
@dataclass
class Clip:
    src_in: int  # source frame of the clip's first frame
    frames: int
    start: int  # output frame it starts on

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass
class Edit:
    seconds: float
    height: int
    width: int
    src_width: int
    src_height: int
    frames: int
    clips: list[Clip] = field(default_factory=list)
    title_size: int = 96
    caption_size: int = 56

    @property
    def scale(self) -> float:
        return self.height / 1920

    def crop_pixels(self) -> tuple[int, int, int, int]:
        """x, y, w, h of the crop in source pixels: the rectangle trimmed to the canvas's shape, even."""
        sw, sh = self.src_width, self.src_height
        cx, cw, ch = CROP["x"] * sw, CROP["width"] * sw, CROP["height"] * sh
        if cw / ch > self.width / self.height:
            new_w = ch * self.width / self.height
            cx, cw = cx + (cw - new_w) / 2, new_w
        h = min(sh, 2 * round(cw * self.height / self.width / 2))
        w = 2 * round(cw / 2)
        return 2 * math.floor(cx / 2), 2 * math.floor((sh - h) / 4), w, h


def make_edit(seconds: float, height: int) -> Edit:
    """7 clips with 6 crossfades adding up to ``seconds`` of 9:16 output at ``height``."""
    width = 2 * round(height * 9 / 16 / 2)
    src_height = 2 * round(height * 9 / 16 / 2)
    src_width = 2 * round(src_height * 16 / 9 / 2)
    frames = round(seconds * FPS)
    total = frames + (CLIPS - 1) * TRANSITION_FRAMES
    lengths = [total // CLIPS + (1 if i < total % CLIPS else 0) for i in range(CLIPS)]
    if min(lengths) <= TRANSITION_FRAMES:
        raise SystemExit(f"BENCH_SECONDS={seconds:g} is too short for 7 clips with 0.5 s crossfades")
    src_frames = frames  # the source is as long as the output
    clips, start = [], 0
    for i, n in enumerate(lengths):
        src_in = (src_frames - max(lengths)) * ORDER[i] // (CLIPS - 1)
        clips.append(Clip(src_in=src_in, frames=n, start=start))
        start += n - TRANSITION_FRAMES
    assert clips[-1].end == frames
    return Edit(seconds=seconds, height=height, width=width, src_width=src_width, src_height=src_height,
                frames=frames, clips=clips, title_size=max(8, round(96 * height / 1920)),
                caption_size=max(8, round(56 * height / 1920)))


def timeline_json(edit: Edit, source: str, transcript: str, music: str) -> dict[str, Any]:
    clips = []
    for i, c in enumerate(edit.clips):
        clip: dict[str, Any] = {"asset": source, "in": f"{c.src_in}f", "out": f"{c.src_in + c.frames}f",
                                "fit": "cover", "crop": dict(CROP)}
        if i:
            clip["transition"] = {"type": "fade", "duration": TRANSITION_FRAMES / FPS}
        clips.append(clip)
    return {
        "canvas": {"aspect_ratio": "9:16", "height": edit.height, "fps": FPS},
        "tracks": [
            {"type": "video", "clips": clips},
            {"type": "text", "clips": [{"text": TITLE, "duration": TITLE_SECONDS, "size": edit.title_size,
                                        "position": "top"}]},
            {"type": "captions", "transcript": transcript, "style": "word-highlight", "size": edit.caption_size},
            {"type": "audio", "clips": [{"asset": music, "in": 0, "out": f"{edit.frames}f", "volume": "-18dB"}]},
        ],
    }


def make_transcript(seconds: float) -> Path:
    """A transcript of the source: 2.5 words/s (each word 0.3 s of a 0.4 s slot), one segment per sentence."""
    path = MEDIA_DIR / f"transcript_{seconds:g}s.json"
    segments, words, t, i = [], [], 0.0, 0
    while t + 0.4 <= seconds + 1e-9:
        word = WORDS[i % len(WORDS)]
        words.append({"word": f" {word}", "start": round(t + 0.05, 3), "end": round(t + 0.35, 3),
                      "probability": 0.9})
        t, i = t + 0.4, i + 1
        if word.endswith(".") or t + 0.4 > seconds:
            segments.append({"start": words[0]["start"], "end": words[-1]["end"],
                             "text": "".join(w["word"] for w in words).strip(), "words": words})
            words = []
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"language": "en", "duration": seconds, "segments": segments}, indent=1))
    return path


def make_music(seconds: float) -> Path:
    """Background music: two tones over quiet pink noise, AAC stereo, a second longer than the edit."""
    path = MEDIA_DIR / f"music_{seconds:g}s.m4a"
    if path.exists() and path.stat().st_size > 0:
        return path
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.m4a")
    length = f"{seconds + 1:g}"
    subprocess.run([
        ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:duration={length}",
        "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={length}",
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.05:sample_rate=48000:duration={length}",
        "-filter_complex", "[0:a][1:a][2:a]amix=inputs=3:normalize=0,pan=stereo|c0=c0|c1=c0[a]",
        "-map", "[a]", "-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(tmp),
    ], check=True)
    tmp.rename(path)
    return path


# -- the pictures the CLI and MoviePy overlay: the product's own, from render.plan --------------
def prepare_overlays(edit: Edit, source: Path, transcript: Path, music: Path, folder: Path) -> dict[str, Any]:
    """Plan the edit with the product's ``render.plan`` (locally, no server), check that it placed the
    clips where :func:`make_edit` did, and write the title and every caption state as PNGs."""
    from PIL import Image

    from operators.context import OpContext
    from operators.media.info import AssetMedia
    from operators.media.probe import probe
    from operators.render.plan import PlanParams, render_plan
    from operators.render.text import anchor, rasterize
    from operators.render.timeline import Timeline
    from operators.storage import Storage
    from operators.types import SourceRef

    media = folder / "media"
    media.mkdir(parents=True)
    for path in (source, transcript, music):
        shutil.copy(path, media / path.name)
    ctx = OpContext(job_id="bench-prep", node="plan", storage=Storage(str(media)))
    assets = {
        "src": AssetMedia(id="src", path=source.name, kind="source", content_type="video/mp4",
                          info=probe(SourceRef(path=source.name), ctx=ctx)),
        "music": AssetMedia(id="music", path=music.name, kind="source", content_type="audio/mp4",
                            info=probe(SourceRef(path=music.name), ctx=ctx)),
        "tr": AssetMedia(id="tr", path=transcript.name, kind="transcript", content_type="application/json"),
    }
    timeline = Timeline.model_validate(timeline_json(edit, "src", "tr", "music"))
    plan = render_plan(timeline.with_assets(assets), params=PlanParams(), ctx=ctx)
    placed = [(v.start, v.frames, v.src_in * FPS) for v in plan.spec.visual]
    expected = [(c.start, c.frames, c.src_in) for c in edit.clips]
    mismatch = None if placed == expected and plan.spec.frames == edit.frames else {
        "plan": [list(map(str, p)) for p in placed], "expected": expected, "plan_frames": plan.spec.frames}
    overlays, pngs = [], {}
    for o in plan.overlays:
        key = (o.lines, o.style)
        if key not in pngs:
            rgba = rasterize(o.lines, o.style)
            png = folder / f"overlay_{len(pngs):04d}.png"
            Image.fromarray(rgba, "RGBA").save(png)
            pngs[key] = (png, (rgba.shape[1], rgba.shape[0]))
        png, size = pngs[key]
        x, y = anchor(size, (edit.width, edit.height), o.position, o.offset, o.margin)
        overlays.append({"png": str(png), "start": o.start, "end": o.end, "x": x, "y": y, "w": size[0], "h": size[1],
                         "title": o.track == 1})
    # Caption lines are broken by characters (max_chars), not pixels: a long line can be wider than the canvas.
    overflow = [o for o in overlays if o["x"] < 0 or o["x"] + o["w"] > edit.width]
    return {"overlays": overlays, "pngs": len(pngs), "plan_mismatch": mismatch,
            "overflow": {"count": len(overflow), "widest_px": max((o["w"] for o in overflow), default=None)},
            "title": next((o for o in overlays if o["title"]), None)}


def pillow_font(folder: Path) -> Path:
    """The font the product draws with by default (Pillow's bundled scalable one) as a TTF file."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=16)
    data = getattr(font, "font_bytes", None)
    if data:
        path = folder / "pillow-default.ttf"
        path.write_bytes(data)
        return path
    found = sorted(Path("/usr/share/fonts").rglob("*.ttf"))
    if not found:
        raise SystemExit("no TTF font for MoviePy's TextClip: Pillow's bundled font is not a file and "
                         "/usr/share/fonts has none (apt-get install fonts-dejavu-core)")
    return found[0]


def manifest(edit: Edit, source: Path, music: Path, prep: dict[str, Any], font: Path, output: Path) -> dict[str, Any]:
    x, y, w, h = edit.crop_pixels()
    return {
        "source": str(source), "music": str(music), "music_gain_db": -18.0, "output": str(output),
        "fps": FPS, "width": edit.width, "height": edit.height, "frames": edit.frames,
        "transition_frames": TRANSITION_FRAMES,
        "clips": [{"in_frame": c.src_in, "frames": c.frames, "start_frame": c.start} for c in edit.clips],
        "crop": {"x": x, "y": y, "w": w, "h": h},
        "title": {"text": TITLE, "size": edit.title_size, "frames": TITLE_SECONDS * FPS, "font": str(font)},
        "overlays": [o for o in prep["overlays"] if not o["title"]],
        "title_png": prep["title"],
        "encode": {"codec": "libx264", "preset": PRESET, "crf": CRF, "gop": round(GOP_SECONDS * FPS),
                   "audio_codec": "aac", "audio_bitrate": AUDIO_BITRATE, "audio_rate": 48000},
    }


# -- ffmpeg CLI --------------------------------------------------------------------------
def ffmpeg_command(m: dict[str, Any], script: Path) -> list[str]:
    """The whole edit as one ``-filter_complex`` graph (written to ``script``)."""
    fps, tf = m["fps"], m["transition_frames"]
    crop = m["crop"]
    args: list[str] = []
    graph: list[str] = []
    for i, c in enumerate(m["clips"]):
        # Seek just before the in point (the CLI decodes from the keyframe before it and drops what precedes
        # it), read a few frames past the out point; trim then cuts exactly.
        args += ["-ss", f"{c['in_frame'] / fps - 1e-4:.6f}", "-t", f"{(c['frames'] + 3) / fps:.6f}",
                 "-i", m["source"]]
        samples = round(c["frames"] * 48000 / fps)
        graph.append(f"[{i}:v]trim=end_frame={c['frames']},setpts=PTS-STARTPTS,"
                     f"crop={crop['w']}:{crop['h']}:{crop['x']}:{crop['y']},"
                     f"scale={m['width']}:{m['height']}:flags=bicubic,setsar=1,format=yuv420p[v{i}]")
        graph.append(f"[{i}:a]aresample=48000,atrim=end_sample={samples},asetpts=PTS-STARTPTS[a{i}]")
    music = len(m["clips"])
    args += ["-t", f"{m['frames'] / fps:.6f}", "-i", m["music"]]
    v, a = "v0", "a0"
    for i, c in enumerate(m["clips"][1:], start=1):
        graph.append(f"[{v}][v{i}]xfade=transition=fade:duration={tf / fps:.6f}:"
                     f"offset={c['start_frame'] / fps:.6f}[x{i}]")
        graph.append(f"[{a}][a{i}]acrossfade=d={tf / fps:.6f}:c1=tri:c2=tri[ax{i}]")
        v, a = f"x{i}", f"ax{i}"
    pictures = [m["title_png"], *m["overlays"]] if m["title_png"] else list(m["overlays"])
    for n, o in enumerate(pictures):
        args += ["-i", o["png"]]
        # Frames start..end-1 exactly: the window is widened by a quarter frame on each side.
        a0, a1 = (o["start"] - 0.25) / fps, (o["end"] - 0.75) / fps
        graph.append(f"[{v}][{music + 1 + n}:v]overlay=x={o['x']}:y={o['y']}:"
                     f"enable='between(t,{a0:.6f},{a1:.6f})'[o{n}]")
        v = f"o{n}"
    graph.append(f"[{v}]format=yuv420p[vout]")
    graph.append(f"[{music}:a]aresample=48000,volume={m['music_gain_db']:g}dB[music]")
    graph.append(f"[{a}][music]amix=inputs=2:duration=first:normalize=0[aout]")
    script.write_text(";\n".join(graph) + "\n")
    e = m["encode"]
    return [
        ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args,
        "-filter_complex_script", str(script), "-map", "[vout]", "-map", "[aout]",
        "-c:v", "libx264", "-preset", e["preset"], "-crf", str(e["crf"]), "-g", str(e["gop"]),
        "-pix_fmt", "yuv420p", "-r", str(fps),
        "-c:a", "aac", "-b:a", str(e["audio_bitrate"]), "-ar", str(e["audio_rate"]), "-ac", "2",
        "-movflags", "+faststart", m["output"],
    ]


def run_child(cmd: list[str], **kwargs: Any) -> dict[str, Any]:
    """Run a command; wall time, its (and its waited-for children's) user+sys CPU, others' CPU meanwhile."""
    load = os.getloadavg()
    busy0 = busy_cpu_s()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = busy_cpu_s() - busy0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "foreign_cpu_s": max(0.0, busy - cpu), "loadavg": load,
            "stdout": proc.stdout[-4000:], "stderr": proc.stderr[-2000:]}


def run_ffmpeg(m: dict[str, Any], output: Path) -> dict[str, Any]:
    m = {**m, "output": str(output)}
    script = output.with_suffix(".filtergraph.txt")
    cmd = ffmpeg_command(m, script)
    result = run_child(cmd)
    result["command"] = " ".join(cmd[6:])
    result["filter_lines"] = len(script.read_text().splitlines())
    result["output"] = str(output)
    return result


# -- MoviePy -----------------------------------------------------------------------------
def moviepy_python() -> Path:
    """The MoviePy venv's python, made on first use (python3 -m venv + pip install)."""
    python = MOVIEPY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import moviepy, sys; sys.exit(0 if moviepy.__version__.startswith('2.') else 1)"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    base = shutil.which("python3") or sys.executable
    print(f"[bench] creating {MOVIEPY_VENV} ({base} -m venv; pip install '{MOVIEPY_SPEC}')", flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(MOVIEPY_VENV)], check=True)
    subprocess.run([str(MOVIEPY_VENV / "bin" / "pip"), "install", "-q", MOVIEPY_SPEC], check=True)
    subprocess.run(probe, check=True)
    return python


def run_moviepy(m: dict[str, Any], output: Path, folder: Path) -> dict[str, Any]:
    python = moviepy_python()
    path = folder / "moviepy_manifest.json"
    path.write_text(json.dumps({**m, "output": str(output), "tmp": str(folder)}, indent=1))
    result = run_child([str(python), str(BENCH_DIR / "render_moviepy.py"), str(path)], cwd=folder)
    lines = [line for line in result["stdout"].splitlines() if line.startswith("{")]
    result["script"] = json.loads(lines[-1]) if lines else None
    version = subprocess.run([str(python), "-c", "import moviepy; print(moviepy.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    result["moviepy_version"] = version
    result["output"] = str(output)
    return result


# -- checks ------------------------------------------------------------------------------
def sample_frames(edit: Edit) -> dict[int, str]:
    """Frames compared across outputs: the middle of each clip, of each crossfade and of the title."""
    out = {min(edit.frames - 1, TITLE_SECONDS * FPS // 2): "title"}
    for i, c in enumerate(edit.clips):
        out.setdefault(c.start + c.frames // 2, f"clip {i + 1}")
        if i:
            out.setdefault(c.start + TRANSITION_FRAMES // 2, f"fade {i}/{i + 1}")
    return dict(sorted(out.items()))


def verify(path: Path, edit: Edit, samples: dict[int, str]) -> tuple[dict[str, Any], dict[int, Any]]:
    """Decode the whole file: frames, sizes, durations, errors, faststart; and the luma of the sample frames."""
    import av

    info: dict[str, Any] = {"path": str(path), "size": path.stat().st_size, "errors": []}
    lumas: dict[int, Any] = {}
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    moov, mdat = head.find(b"moov"), head.find(b"mdat")
    info["faststart"] = moov != -1 and (mdat == -1 or moov < mdat)
    try:
        with av.open(str(path)) as c:
            info["container_duration_s"] = c.duration / 1e6 if c.duration else None
            v = c.streams.video[0]
            info.update(width=v.codec_context.width, height=v.codec_context.height, codec=v.codec_context.name,
                        rate=str(v.average_rate), pix_fmt=v.codec_context.pix_fmt)
            frames, first_pts, last_pts = 0, None, None
            for frame in c.decode(v):
                if frames in samples:
                    # The coded luma plane itself: a conversion (to "gray") would depend on the colour tags.
                    yuv = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
                    lumas[frames] = yuv.to_ndarray()[: frame.height].copy()
                if frame.pts is not None:
                    first_pts = frame.pts if first_pts is None else first_pts
                    last_pts = frame.pts
                frames += 1
            info["frames"] = frames
            if first_pts is not None:
                info["video_duration_s"] = float((last_pts - first_pts) * v.time_base) + 1 / FPS
        with av.open(str(path)) as c:
            if c.streams.audio:
                a = c.streams.audio[0]
                info.update(audio_codec=a.codec_context.name, audio_rate=a.codec_context.sample_rate,
                            audio_channels=a.codec_context.layout.nb_channels, audio_bit_rate=a.bit_rate)
                samples_n = sum(f.samples for f in c.decode(a))
                info["audio_duration_s"] = samples_n / a.codec_context.sample_rate  # decoded, priming dropped
                info["audio_stream_duration_s"] = float(a.duration * a.time_base) if a.duration else None
            else:
                info["errors"].append("no audio stream")
    except Exception as exc:  # noqa: BLE001  (a file that does not decode is the finding)
        info["errors"].append(f"{type(exc).__name__}: {exc}")
    want = (edit.width, edit.height)
    if (info.get("width"), info.get("height")) != want:
        info["errors"].append(f"size {info.get('width')}x{info.get('height')}, expected {want[0]}x{want[1]}")
    info["frames_ok"] = info.get("frames") == edit.frames
    info["decodes"] = not info["errors"]
    return info, lumas


def compare(lumas: dict[int, Any], reference: dict[int, Any], samples: dict[int, str]) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for k, label in samples.items():
        if k not in lumas or k not in reference or lumas[k].shape != reference[k].shape:
            out.append({"frame": k, "what": label, "psnr_db": None})
            continue
        mse = float(np.mean((lumas[k].astype(np.float32) - reference[k].astype(np.float32)) ** 2))
        out.append({"frame": k, "what": label, "psnr_db": 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)})
    return out


# -- the product -------------------------------------------------------------------------
async def upload(client: httpx.AsyncClient, path: Path, content_type: str) -> str:
    with path.open("rb") as fh:
        response = await client.post("/assets/", params={"project_id": PROJECT, "filename": path.name},
                                     content=fh.read(), headers={"Content-Type": content_type})
    if response.status_code != 201:
        raise RuntimeError(f"POST /assets/ {path.name}: {response.status_code} {response.text[:500]}")
    return str(response.json()["id"])


async def make_transcript_asset(server: ServerProcess, asset_id: str) -> None:
    """Give the uploaded transcript's record ``kind: transcript``, through the server's embedded Redis."""
    from redis import asyncio as aioredis

    from scheduler.records.assets import AssetStore

    port = (server.data_dir / "redis" / "redis.port").read_text().strip()
    redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    try:
        await AssetStore(redis).update(asset_id, kind="transcript", content_type="application/json")
    finally:
        await redis.aclose()


async def render_once(client: httpx.AsyncClient, dask: Any, server: ServerProcess, timeline: dict[str, Any],
                      workers: int, segment_seconds: float | None, timeout: float) -> dict[str, Any]:
    payload: dict[str, Any] = {"project_id": PROJECT, "timeline": timeline,
                               "output": {"preset": PRESET, "crf": CRF}}
    if segment_seconds:
        payload["segment_seconds"] = segment_seconds
    record, timing = await timed_job(client, dask, server, "render", payload, timeout, workers)
    result = record.get("result_payload") or {}
    out: dict[str, Any] = {
        **timing, "status": record["status"], "error_message": record.get("error_message"),
        "log": [e.get("message") for e in (result.get("log") or [])],
        "outputs": result.get("outputs"),
    }
    return out


async def download(client: httpx.AsyncClient, asset: dict[str, Any], target: Path) -> None:
    async with client.stream("GET", asset["url"]) as response:
        response.raise_for_status()
        with target.open("wb") as fh:
            async for chunk in response.aiter_bytes(1 << 20):
                fh.write(chunk)


async def run_workers(args: argparse.Namespace, workers: int, edit: Edit, warm_edit: Edit, files: dict[str, Path],
                      m: dict[str, Any], samples: dict[int, str], state: dict[str, Any]) -> dict[str, Any]:
    from distributed import Client

    server = ServerProcess(dask_workers=workers, keep_tmp=args.keep_tmp)
    server.start()
    out: dict[str, Any] = {"workers": workers, "startup_s": server.startup_s, "runs": []}
    try:
        print(f"[bench] {workers} worker(s): server ready in {server.startup_s:.1f}s (log: {server.log_path})",
              flush=True)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            ids = {"source": await upload(client, files["source"], "video/mp4"),
                   "music": await upload(client, files["music"], "audio/mp4"),
                   "transcript": await upload(client, files["transcript"], "application/json")}
            await make_transcript_asset(server, ids["transcript"])
            timeline = timeline_json(edit, ids["source"], ids["transcript"], ids["music"])
            warm_timeline = timeline_json(warm_edit, ids["source"], ids["transcript"], ids["music"])
            out["timeline"] = timeline
            diag = (await client.get("/health/diagnostics")).json()
            dask = await Client(diag["cluster"]["scheduler_address"], asynchronous=True, timeout="20s")
            try:
                t0 = time.perf_counter()
                warm = await render_once(client, dask, server, warm_timeline, workers, None, args.timeout)
                out["warmup_s"] = time.perf_counter() - t0
                if warm["status"] != "completed":
                    out["warmup_failed"] = warm["error_message"]
                    print(f"[bench]   warm-up render {warm['status']}: {warm['error_message']}", flush=True)
                for i in range(args.runs):
                    tag = f"{workers}w_{i + 1}"
                    ff = run_ffmpeg(m, RENDER_DIR / f"ffmpeg_{tag}.mp4")
                    print(f"[bench]   run {i + 1}: ffmpeg {ff['wall_s']:.2f}s, {ff['cpu_s']:.2f} CPU-s "
                          f"(load {ff['loadavg'][0]:.2f})", flush=True)
                    prod = await render_once(client, dask, server, timeline, workers, args.segment_seconds,
                                             args.timeout)
                    run: dict[str, Any] = {"ffmpeg": ff, "product": prod}
                    if prod["status"] != "completed":
                        print(f"[bench]   run {i + 1}: render {prod['status']}: {prod['error_message']}\n"
                              + "\n".join(f"    | {line}" for line in prod["log"][-8:]), flush=True)
                    else:
                        video = (prod["outputs"] or {}).get("video") or {}
                        target = RENDER_DIR / f"product_{tag}.mp4"
                        await download(client, video, target)
                        prod["output"] = str(target)
                        run["ratio_wall"] = prod["wall_s"] / ff["wall_s"]
                        run["ratio_cpu"] = prod["cpu_s"] / ff["cpu_s"] if ff["cpu_s"] else None
                        t = prod["tasks"]
                        print(f"[bench]   run {i + 1}: render {prod['wall_s']:.2f}s, {prod['cpu_s']:.2f} CPU-s "
                              f"= {run['ratio_wall']:.2f}x ffmpeg's wall; framework overhead {t['overhead_s']:.2f}s "
                              f"({t['overhead_pct']:.1f}%), load {prod['loadavg'][0]:.2f}", flush=True)
                    for name in ("ffmpeg", "product"):
                        if run[name].get("output"):
                            info, lumas = verify(Path(run[name]["output"]), edit, samples)
                            run[name]["verify"] = info
                            state.setdefault("lumas", {})[f"{name}_{tag}"] = lumas
                    out["runs"].append(run)
            finally:
                await dask.close()
    finally:
        out["server_log_tail"] = server.log_tail(30)
        out["exit_code"] = server.stop()
    return out


# -- report ------------------------------------------------------------------------------
def rows_and_summary(data: dict[str, Any]) -> tuple[list[list[Any]], dict[str, Any]]:
    rows: list[list[Any]] = []
    s: dict[str, Any] = {}

    def row(name: str, r: dict[str, Any], ratio: Any = "", ratio_cpu: Any = "") -> None:
        v = r.get("verify") or {}
        rows.append([name, r["wall_s"], r["cpu_s"], r.get("workers_cpu_s", ""), ratio, ratio_cpu, v.get("frames", "-"),
                     v.get("video_duration_s", float("nan")), v.get("audio_duration_s", float("nan")),
                     "yes" if v.get("decodes") else "NO", r.get("foreign_cpu_s", float("nan")), r["loadavg"][0]])

    products = []
    for w in data["workers"]:
        for i, run in enumerate(w["runs"]):
            ff, prod = run["ffmpeg"], run["product"]
            row(f"ffmpeg CLI (before {w['workers']}w #{i + 1})", ff)
            if prod["status"] == "completed":
                row(f"product, {w['workers']} worker(s) #{i + 1}", prod, run["ratio_wall"], run["ratio_cpu"] or "")
                products.append((w["workers"], prod, ff))
            else:
                rows.append([f"product, {w['workers']} worker(s) #{i + 1}", prod["wall_s"], prod["cpu_s"],
                             prod["workers_cpu_s"], prod["status"].upper(), "", "-", "-", "-", "-",
                             prod["foreign_cpu_s"], prod["loadavg"][0]])
    mp = data.get("moviepy")
    best = {n: min((p for p in products if p[0] == n), key=lambda p: p[1]["wall_s"]) for n, *_ in products}
    if mp and "wall_s" in mp:
        ref = best.get(2) or next(iter(best.values()), None)
        ratio = mp["wall_s"] / ref[1]["wall_s"] if ref else ""
        ratio_cpu = mp["cpu_s"] / ref[1]["cpu_s"] if ref else ""
        row(f"MoviePy {mp.get('moviepy_version', '')}", mp, ratio, ratio_cpu)
        if ref:
            s[f"moviepy/product ({ref[0]}w) wall"] = ratio
            s[f"moviepy/product ({ref[0]}w) cpu"] = ratio_cpu
    for n, (_, prod, ff) in sorted(best.items()):
        s[f"product ({n}w) wall s, best"] = prod["wall_s"]
        s[f"product/ffmpeg ({n}w) wall"] = prod["wall_s"] / ff["wall_s"]
        s[f"product/ffmpeg ({n}w) cpu"] = prod["cpu_s"] / ff["cpu_s"] if ff["cpu_s"] else None
        s[f"product ({n}w) frames exact"] = (prod.get("verify") or {}).get("frames_ok")
    if 1 in best and 2 in best:
        s["product 1w / 2w (best walls)"] = best[1][1]["wall_s"] / best[2][1]["wall_s"]
    return rows, s


def report(data: dict[str, Any]) -> None:
    rows, summary = rows_and_summary(data)
    data["summary"] = summary
    print()
    print(f"edit: {data['edit']['seconds']:g} s, {data['edit']['width']}x{data['edit']['height']} @ {FPS} fps, "
          f"{data['edit']['frames']} frames; source {data['edit']['src_width']}x{data['edit']['src_height']}; "
          f"{data['prep']['overlays']} text states ({data['prep']['pngs']} pictures)")
    print_table(rows, ["contender", "wall s", "CPU s", "workers CPU s", "ratio wall", "ratio CPU", "frames",
                       "video s", "audio s", "decodes", "others' CPU s", "load 1m"])
    print("(CPU s: the ffmpeg or MoviePy process tree; the product: the server's whole tree, of which "
          "'workers CPU s' is its children: Dask workers + redis-server.\n ratio: product/ffmpeg for the product "
          "rows, moviepy/product (2 workers, fastest run) for MoviePy)")
    comp = data.get("frame_compare") or {}
    if comp:
        print("\nluma PSNR (dB) against the ffmpeg output at sample frames (99 = identical):")
        names = list(comp)
        first = comp[names[0]]
        print_table([[f"{c['frame']} {c['what']}", *(comp[n][j]["psnr_db"] if comp[n][j]["psnr_db"] is not None
                                                     else "-" for n in names)]
                     for j, c in enumerate(first)], ["frame", *names])
    for w in data["workers"]:
        for run in w["runs"]:
            t = run["product"].get("tasks")
            if t:
                print(f"\ntasks of the {w['workers']}-worker render (seconds from POST):")
                print_table([[name, n["tasks"], n["compute_s"], n["max_task_s"], n["start_rel_s"], n["stop_rel_s"]]
                             for name, n in t["nodes"].items()], ["node", "tasks", "compute s", "max task s",
                                                                    "start", "stop"])
                break
    problems = data.get("problems") or []
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(f"- {p}")
    print()
    for key, value in summary.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


def find_problems(data: dict[str, Any]) -> list[str]:
    out = []
    if data["prep"].get("plan_mismatch"):
        out.append(f"render.plan placed the clips elsewhere than the edit: {data['prep']['plan_mismatch']}")
    overflow = data["prep"]["overflow"]
    if overflow["count"]:
        out.append(f"{overflow['count']} of the product's text states are wider than the {data['edit']['width']} px "
                   f"canvas (widest {overflow['widest_px']} px): their ends are cut off in every output")
    for w in data["workers"]:
        if w.get("warmup_failed"):
            out.append(f"{w['workers']}w warm-up render failed: {w['warmup_failed']}")
        for i, run in enumerate(w["runs"]):
            for name in ("ffmpeg", "product"):
                r = run[name]
                if name == "product" and r["status"] != "completed":
                    out.append(f"product {w['workers']}w #{i + 1} {r['status']}: {r['error_message']}")
                    continue
                segs = [t for t in (r.get("tasks") or {}).get("timeline", []) if t["key"].startswith("segment")]
                used = {t["worker"] for t in segs}
                spread = min(len(segs), w["workers"])
                if name == "product" and w["workers"] > 1 and len(segs) > 1 and len(used) < spread:
                    out.append(f"product {w['workers']}w #{i + 1}: its {len(segs)} segment tasks ran on "
                               f"{len(used)} of the {w['workers']} workers")
                v = r.get("verify") or {}
                if v.get("errors"):
                    out.append(f"{name} {w['workers']}w #{i + 1}: {v['errors']}")
                if v and not v.get("frames_ok"):
                    out.append(f"{name} {w['workers']}w #{i + 1}: {v.get('frames')} frames, expected "
                               f"{data['edit']['frames']}")
    mp = data.get("moviepy") or {}
    v = mp.get("verify") or {}
    if mp.get("error"):
        out.append(f"moviepy: {mp['error']}")
    if v.get("errors"):
        out.append(f"moviepy: {v['errors']}")
    if v and not v.get("frames_ok"):
        out.append(f"moviepy: {v.get('frames')} frames, expected {data['edit']['frames']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="2,1", help="Dask worker counts to run, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="ffmpeg+render pairs per worker count")
    parser.add_argument("--segment-seconds", type=float, help="override the graph's segment_seconds (5)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="max seconds of one render job")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp folders (servers' logs, PNGs)")
    args = parser.parse_args()
    seconds = env_float("BENCH_SECONDS", 60.0)
    height = int(env_float("BENCH_HEIGHT", 1920))
    skip_moviepy = os.environ.get("BENCH_SKIP_MOVIEPY", "") not in ("", "0")
    if height % 2 or height < 64:
        raise SystemExit("BENCH_HEIGHT must be even and at least 64")

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    edit = make_edit(seconds, height)
    warm_edit = make_edit(min(seconds, 2.0), 320)  # a small render of the same kinds of layers
    files = {"source": make_source(edit.src_width, edit.src_height, FPS, seconds, GOP_SECONDS),
             "music": make_music(seconds), "transcript": make_transcript(seconds)}
    RENDER_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    state: dict[str, Any] = {}
    try:
        prep = prepare_overlays(edit, files["source"], files["transcript"], files["music"], tmp)
        font = pillow_font(tmp)
        m = manifest(edit, files["source"], files["music"], prep, font, RENDER_DIR / "unused.mp4")
        samples = sample_frames(edit)
        print(f"[bench] edit: {len(edit.clips)} clips, {edit.frames} frames {edit.width}x{edit.height}; "
              f"{len(prep['overlays'])} text states, {prep['pngs']} PNGs; crop {m['crop']}", flush=True)
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
        results = [asyncio.run(run_workers(args, w, edit, warm_edit, files, m, samples, state)) for w in workers]
        moviepy: dict[str, Any] | None = None
        if not skip_moviepy:
            print("[bench] MoviePy ...", flush=True)
            try:
                moviepy = run_moviepy(m, RENDER_DIR / "moviepy.mp4", tmp)
                moviepy["verify"], state.setdefault("lumas", {})["moviepy"] = verify(
                    Path(moviepy["output"]), edit, samples)
                print(f"[bench]   MoviePy {moviepy['wall_s']:.2f}s, {moviepy['cpu_s']:.2f} CPU-s", flush=True)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                moviepy = {"error": str(exc)[-3000:]}
                print(f"[bench]   MoviePy failed: {moviepy['error']}", flush=True)
        lumas = state.get("lumas", {})
        ref_name = next((k for k in lumas if k.startswith("ffmpeg_")), None)
        frame_compare = {name: compare(l, lumas[ref_name], samples) for name, l in lumas.items()
                         if ref_name and name != ref_name and not name.startswith("ffmpeg_")}
        data: dict[str, Any] = {
            "benchmark": "render",
            "machine": machine_info(),
            "edit": {"seconds": seconds, "width": edit.width, "height": edit.height, "frames": edit.frames,
                     "src_width": edit.src_width, "src_height": edit.src_height, "fps": FPS,
                     "clips": [vars(c) for c in edit.clips], "crop_pixels": m["crop"]},
            "files": {k: {"path": str(p), "size": p.stat().st_size} for k, p in files.items()},
            "prep": {"overlays": len(prep["overlays"]), "pngs": prep["pngs"], "plan_mismatch": prep["plan_mismatch"],
                     "overflow": prep["overflow"]},
            "args": vars(args), "skip_moviepy": skip_moviepy,
            "wall_s": time.perf_counter() - t_all,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "workers": results, "moviepy": moviepy, "frame_compare": frame_compare,
        }
    finally:
        if args.keep_tmp:
            print(f"[bench] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    data["problems"] = find_problems(data)
    report(data)
    default = seconds == 60.0 and height == 1920
    path = write_json("render.json" if default else f"render_{seconds:g}s_{height}.json", data)
    cpus = os.cpu_count() or 1
    noisy = [(name, r["foreign_cpu_s"] / (cpus * r["wall_s"])) for name, r in
             [(f"ffmpeg before {w['workers']}w", run["ffmpeg"]) for w in results for run in w["runs"]]
             + [(f"product {w['workers']}w", run["product"]) for w in results for run in w["runs"]]
             + ([("moviepy", moviepy)] if moviepy and "wall_s" in moviepy else [])]
    noisy = [n for n in noisy if n[1] > 0.05]
    if noisy:
        print(f"\nWARNING: other processes used more than 5% of the {cpus} CPUs during "
              + ", ".join(f"{name} ({share:.0%})" for name, share in noisy)
              + ": those figures are pessimistic; compare figures measured back to back, or run again.")
    print(f"\ntotal {data['wall_s']:.1f}s; results in {path}")
    # The product failing or missing its exact frame count fails the run; the others' problems are reported.
    failed = [run for w in results for run in w["runs"]
              if not (run["product"].get("verify") or {}).get("frames_ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
