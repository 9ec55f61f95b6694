"""What colour management and deinterlacing cost per segment, as a share of its encode (issue 19).

For each source kind of the colour test card (``tests/colourgen.py``: BT.709, untagged SD/HD,
full range, MJPEG, HLG, PQ) at 1080p, and for a 1080i interlaced clip (``tests/footagegen.py``),
the frames are decoded once, then timed through:

- ``managed``: :class:`operators.media.colour.ColourScaler` to 1280x720, what proxies and exports run;
- ``plain``: one ``scale=1280:720`` + ``format=yuv420p`` with no colour arguments (what ran before
  colour management: wrong colours, but the least a resize costs);
- ``deinterlace``: :class:`operators.media._av.Deinterlacer` (bwdif), interlaced clip only;
- ``encode``: libx264 ``veryfast`` CRF 23 on one thread (the proxy's encoder) of libavfilter's
  ``testsrc2`` at the same size: the card's flat patches cost an encoder almost nothing, so they
  would overstate every share; testsrc2's moving detail is nearer to footage (and still easy).

The figure is ``(managed - plain) / encode`` per kind, and ``deinterlace / encode``. Writes
``bench/out/footage_costs.json``. Run: ``.venv/bin/python bench/footage_costs.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.media._av import Deinterlacer  # noqa: E402
from operators.media.colour import ColourScaler, build_graph  # noqa: E402
from tests.colourgen import make_card_clip  # noqa: E402
from tests.footagegen import make_interlaced  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "footage_costs.json"
KINDS = ("bt709", "hd-untagged", "sd-untagged", "full-h264", "mjpeg", "hlg", "pq")
FRAMES = 30
REPEATS = 3


def _decode(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _best(run: Callable[[], Any]) -> float:
    """The fastest of a few runs, in seconds (the least noise on a shared machine)."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def _plain(frames: list[Any]) -> list[Any]:
    graph = build_graph(frames[0], [("scale", "1280:720:flags=bicubic"), ("format", "yuv420p")])
    out = []
    for frame in frames:
        graph[1].push(frame)
        out.append(graph[2].pull())
    return out


def _managed(frames: list[Any]) -> list[Any]:
    scale = ColourScaler(1280, 720)
    return [scale(frame) for frame in frames]


def _deinterlace(frames: list[Any]) -> list[Any]:
    d = Deinterlacer()
    out = [f for frame in frames for f in d(frame)]
    return out + d.flush()


def _testsrc2(width: int, height: int) -> list[Any]:
    graph = av.filter.Graph()
    src = graph.add("testsrc2", f"size={width}x{height}:rate=30:duration={FRAMES / 30}")
    fmt = graph.add("format", "yuv420p")
    sink = graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    frames = []
    while True:
        try:
            frames.append(sink.pull())
        except (av.error.EOFError, av.error.BlockingIOError):
            return frames


def _encode(frames: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, av.open(f"{tmp}/out.mp4", "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "threads": "1"}
        for i, frame in enumerate(frames):
            frame.pts, frame.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def main() -> None:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            size = (720, 576) if kind == "sd-untagged" else (1920, 1080)
            frames = _decode(make_card_clip(Path(tmp) / f"{kind}.mp4", kind, frames=FRAMES, size=size))
            reference = _testsrc2(1280, 720)
            plain, managed, encode = _best(lambda: _plain(frames)), _best(lambda: _managed(frames)), \
                _best(lambda: _encode(reference))
            results[kind] = {"plain_ms_per_frame": 1000 * plain / FRAMES,
                             "managed_ms_per_frame": 1000 * managed / FRAMES,
                             "encode_ms_per_frame": 1000 * encode / FRAMES,
                             "colour_share_of_encode": max(0.0, managed - plain) / encode}
            print(f"{kind:12} colour {results[kind]['colour_share_of_encode']:6.1%} of encode "
                  f"({1000 * (managed - plain) / FRAMES:+.2f} ms/frame, encode {1000 * encode / FRAMES:.1f} ms)")
        frames = _decode(make_interlaced(Path(tmp) / "1080i.mp4", frames=FRAMES, size=(1920, 1080)))
        reference = _testsrc2(1920, 1080)
        deint, encode = _best(lambda: _deinterlace(frames)), _best(lambda: _encode(reference))
        results["1080i"] = {"deinterlace_ms_per_frame": 1000 * deint / FRAMES,
                            "encode_ms_per_frame": 1000 * encode / FRAMES,
                            "deinterlace_share_of_encode": deint / encode}
        print(f"1080i        bwdif {results['1080i']['deinterlace_share_of_encode']:6.1%} of encode "
              f"({1000 * deint / FRAMES:.2f} ms/frame, 1080p encode {1000 * encode / FRAMES:.1f} ms)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
