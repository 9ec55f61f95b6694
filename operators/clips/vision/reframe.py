"""``clips.reframe``: a crop window per shot for the target aspect ratio, centred on the main face.

The clip's range of the source is decoded once (non-reference frames skipped by default:
shot cuts and faces need a few frames a second, not all of them), each frame scaled to a
640-pixel grey picture as a player shows it (display matrix applied). Shot cuts come from
:mod:`.shots`; faces from :mod:`.faces` on up to ``samples_per_shot`` frames spread over each
shot. Every shot gets one window, held for the whole shot, so the picture never drifts or
jumps inside a shot: centred on the shot's main face (on the span of its sightings when the
face moves, so it stays inside), or centred when there is none. Neighbouring shots whose
windows differ by less than ``merge_below`` keep the first one (no needless jumps at a cut).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.clips.vision.faces import Face, detect_faces, main_face
from operators.clips.models import CropWindow, FoundClip, Reframe
from operators.clips.vision.shots import ShotDetector, thumbnail
from operators.context import OpContext
from operators.errors import MediaError
from operators.media._av import Progress, Scaler, codec_threads, coded_size, media_error, open_input, rotate_rgb
from operators.media.info import MediaInfo
from operators.registry import operator
from operators.render.timeline import ASPECT_RATIOS
from operators.types import SourceRef

__all__ = ["ReframeParams", "crop_for", "crop_size", "reframe"]

ANALYSIS_SIZE = 640  # the longer side of the pictures faces are looked for in


class ReframeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aspect_ratio: str = Field("9:16", pattern=r"^(9:16|1:1|4:5|16:9)$")
    samples_per_shot: int = Field(5, ge=1, le=30)
    sample_every: float = Field(0.4, gt=0, le=5, description="seconds between the frames kept for faces")
    every_frame: bool = Field(False, description="decode every frame, not only reference frames")
    merge_below: float = Field(0.03, ge=0, le=0.5, description="windows closer than this are one")


def crop_size(display: tuple[int, int], aspect: Fraction) -> tuple[float, float]:
    """The window's width and height, in fractions of the shown picture, for the target ``aspect``."""
    source = Fraction(display[0], display[1])
    if aspect < source:
        return float(aspect / source), 1.0
    return 1.0, float(source / aspect)


def _floor(value: float) -> float:
    return math.floor(value * 10_000) / 10_000


def crop_for(face: Face | None, size: tuple[float, float], t: float) -> CropWindow:
    """The window of one shot: on the face (or centred), inside the picture."""
    w, h = _floor(size[0]), _floor(size[1])
    if face is None:
        return CropWindow(t=t, x=_floor((1 - w) / 2), y=_floor((1 - h) / 2), width=w, height=h)
    ex, ey, ew, eh = face.extent
    cx, cy = face.centre
    if ew <= w:
        cx = ex + ew / 2  # every sighting fits: centre the window on all of them
    if eh <= h:
        cy = ey + eh / 2
    # A face sits a little above the middle of a portrait frame, as a camera operator puts it.
    x = min(max(cx - w / 2, 0.0), 1.0 - w)
    y = min(max(cy - h * 0.45, 0.0), 1.0 - h)
    box = tuple(round(v, 4) for v in (ex, ey, ew, eh))
    return CropWindow(t=t, x=_floor(x), y=_floor(y), width=w, height=h, face=box)  # type: ignore[arg-type]


def _analysis_size(display: tuple[int, int]) -> tuple[int, int]:
    scale = ANALYSIS_SIZE / max(display)
    return max(2, int(round(display[0] * scale / 2)) * 2), max(2, int(round(display[1] * scale / 2)) * 2)


def _frames(local, info: MediaInfo, start: float, end: float, every_frame: bool, progress: Progress):
    """(seconds, upright grey picture) of the source's frames in ``[start, end)``."""
    video = info.video
    assert video is not None
    size = _analysis_size((video.display_width, video.display_height))
    coded = coded_size(size, video.rotation)
    scaler = Scaler(coded[0], coded[1], format="gray", interpolation="AREA")
    with open_input(local) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = codec_threads(None)
        if not every_frame:
            stream.codec_context.skip_frame = "NONREF"
        tb = stream.time_base
        origin = video.start_pts
        container.seek(max(origin, origin + int(Fraction(repr(max(0.0, start - 0.5))) / tb)), stream=stream,
                       backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float((frame.pts - origin) * tb)
                if t < start - 1e-3:
                    continue
                if t >= end:
                    break
                gray = scaler(frame).to_ndarray()
                progress((t - start) / max(end - start, 1e-3))
                yield t, rotate_rgb(np.ascontiguousarray(gray[:, : coded[0]]), video.rotation)
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001  (any decoder failure is the source's)
            raise media_error(f"The source could not be decoded between {start:.2f}s and {end:.2f}s", exc) from None


def analyse(local, info: MediaInfo, start: float, end: float, params: ReframeParams,
            progress: Progress | None = None) -> Reframe:
    """Shots and faces of ``[start, end)`` of a source file, and the window for each shot."""
    video = info.video
    if video is None:
        raise MediaError("generate_clip needs a video source: this one has no video stream to reframe")
    detector = ShotDetector()
    kept: list[tuple[float, np.ndarray]] = []
    next_keep = start
    for t, gray in _frames(local, info, start, end, params.every_frame, progress or Progress(None)):
        detector.add(t, thumbnail(gray))
        if t >= next_keep:
            kept.append((t, gray))
            next_keep = t + params.sample_every
    if not kept:
        raise MediaError(f"no video frame could be decoded between {start:.2f}s and {end:.2f}s")
    cuts = detector.cuts()
    bounds = [start, *cuts, end]
    size = crop_size((video.display_width, video.display_height), ASPECT_RATIOS[params.aspect_ratio])
    crops: list[CropWindow] = []
    for a, b in zip(bounds, bounds[1:]):
        inside = [g for t, g in kept if a <= t < b] or [min(kept, key=lambda k: abs(k[0] - (a + b) / 2))[1]]
        picks = np.linspace(0, len(inside) - 1, min(params.samples_per_shot, len(inside))).round().astype(int)
        face = main_face([detect_faces(inside[i]) for i in sorted(set(picks.tolist()))])
        window = crop_for(face, size, round(a - start, 3))
        near = crops and max(abs(window.x - crops[-1].x), abs(window.y - crops[-1].y)) < params.merge_below
        if near:
            continue  # the same framing as the shot before: no cut in the crop path
        crops.append(window)
    return Reframe(start=start, end=end, shots=tuple(round(c - start, 3) for c in cuts), crops=tuple(crops),
                   frames_seen=len(detector.times))


@operator("clips.reframe", weight=3, version=1)
def reframe(source: SourceRef, info: MediaInfo, clip: FoundClip, *, params: ReframeParams,
            ctx: OpContext) -> Reframe:
    """The crop path of one clip: a window per shot, on the main face."""
    import cv2

    cv2.setNumThreads(codec_threads(None))
    clip = FoundClip.model_validate(clip)
    progress = Progress(ctx)
    with ctx.storage.reading(source.path) as local:
        plan = analyse(local, MediaInfo.model_validate(info), clip.start, clip.end, params, progress)
    faces = sum(1 for c in plan.crops if c.face is not None)
    ctx.log(f"Clip {clip.rank} ({clip.start:.1f}-{clip.end:.1f} s): {len(plan.shots) + 1} shot(s), "
            f"{len(plan.crops)} window(s), {faces} on a face; {plan.frames_seen} frames looked at")
    progress.done()
    return plan
