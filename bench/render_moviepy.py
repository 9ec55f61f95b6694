"""The render benchmark's edit in MoviePy 2: run by ``bench/render.py`` with the MoviePy venv's python.

Run: ``bench/out/venv-moviepy/bin/python bench/render_moviepy.py MANIFEST.json``

Not a benchmark of its own (``bench/run.sh`` skips it): ``render.py`` writes the manifest (source, music,
the 7 clips in output frames, the crop in source pixels, the title, the caption PNGs with their frames and
positions, the encoder settings) and times this script as a subprocess. Only MoviePy and the standard
library are used here, so it runs in its own venv. Prints one JSON line: the time spent importing,
building and writing, and this process's own and its children's CPU seconds.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> int:
    t0 = time.perf_counter()
    m = json.loads(Path(sys.argv[1]).read_text())
    from moviepy import (
        AudioFileClip,
        CompositeAudioClip,
        CompositeVideoClip,
        ImageClip,
        TextClip,
        VideoFileClip,
        afx,
        vfx,
    )

    t_import = time.perf_counter()
    fps, tf = m["fps"], m["transition_frames"] / m["fps"]
    size = (m["width"], m["height"])
    crop = m["crop"]
    duration = m["frames"] / fps
    sources, layers = [], []
    last = len(m["clips"]) - 1
    for i, c in enumerate(m["clips"]):
        # One reader per clip: clips that overlap in a crossfade would make one reader seek back and forth.
        source = VideoFileClip(m["source"], audio=True)
        sources.append(source)
        start = c["in_frame"] / fps
        clip = (source.subclipped(start, start + c["frames"] / fps)
                .cropped(x1=crop["x"], y1=crop["y"], width=crop["w"], height=crop["h"])
                .resized(new_size=size))
        effects, sound = [], []
        if i:
            effects.append(vfx.CrossFadeIn(tf))
            sound.append(afx.AudioFadeIn(tf))
        if i < last:
            sound.append(afx.AudioFadeOut(tf))
        if effects:
            clip = clip.with_effects(effects)
        if sound and clip.audio is not None:
            clip = clip.with_audio(clip.audio.with_effects(sound))
        layers.append(clip.with_start(c["start_frame"] / fps))
    title = m["title"]
    # MoviePy 2's label cuts off the top of the glyphs without a margin above them.
    layers.append(TextClip(font=title["font"], text=title["text"], font_size=title["size"], color="white",
                           margin=(2, title["size"] // 4), duration=title["frames"] / fps)
                  .with_position(("center", "top")))
    for o in m["overlays"]:
        layers.append(ImageClip(o["png"]).with_start(o["start"] / fps).with_duration((o["end"] - o["start"]) / fps)
                      .with_position((o["x"], o["y"])))
    video = CompositeVideoClip(layers, size=size).with_duration(duration)
    music = AudioFileClip(m["music"])
    gain = 10 ** (m["music_gain_db"] / 20)
    backing = music.subclipped(0, duration).with_effects([afx.MultiplyVolume(gain)])
    video = video.with_audio(CompositeAudioClip([video.audio, backing]).with_duration(duration))
    t_build = time.perf_counter()
    e = m["encode"]
    video.write_videofile(
        m["output"], fps=fps, codec=e["codec"], preset=e["preset"], audio_codec=e["audio_codec"],
        audio_bitrate=f"{e['audio_bitrate'] // 1000}k", audio_fps=e["audio_rate"],
        temp_audiofile_path=m.get("tmp", ""), ffmpeg_params=["-crf", str(e["crf"]), "-g", str(e["gop"]),
                                                              "-movflags", "+faststart"],
        logger=None,
    )
    t_write = time.perf_counter()
    for clip in [*sources, music, video]:
        clip.close()
    print(json.dumps({
        "import_s": t_import - t0, "build_s": t_build - t_import, "write_s": t_write - t_build,
        "total_s": time.perf_counter() - t0, "self_cpu_s": cpu(resource.RUSAGE_SELF),
        "children_cpu_s": cpu(resource.RUSAGE_CHILDREN), "layers": len(layers),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
