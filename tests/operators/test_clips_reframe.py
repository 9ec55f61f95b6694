"""Reframing for 9:16: shot cuts, the main face, one held window per shot, centred without a face.

The video is made here: shots of a 16:9 picture, each with its own background, a drawn face
(that OpenCV's Haar cascade finds: checked first) placed off-centre, moving a little, or none.
The face's box in every frame is known, so "the face stays inside the crop" is counted frame
by frame against the crop path the operator returns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from operators.clips.vision.faces import detect_faces
from operators.clips.models import FoundClip, Reframe
from operators.clips.vision.reframe import ReframeParams, crop_size, reframe
from operators.media.probe import probe
from operators.types import SourceRef
from tests import clipgen as cg
from tests.mediagen import media_ctx

SHOTS = [
    cg.Shot(4.0, 0.15, (60, 90, 140), drift=0.04),   # face far left, drifting right
    cg.Shot(3.0, 0.80, (170, 150, 110)),             # face far right
    cg.Shot(3.0, None, (100, 160, 100)),             # nobody
    cg.Shot(2.0, 0.62, (200, 200, 210), drift=-0.03),  # face right of centre
]


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_the_drawn_face_is_a_face_to_the_cascade_and_the_backgrounds_are_not() -> None:
    for side in (64, 100, 140):
        canvas = np.full((360, 640, 3), 90, np.uint8)
        canvas[40 : 40 + side, 300 : 300 + side] = cg.draw_face(side)
        (box,) = detect_faces(_gray(canvas))
        assert abs(box[0] + box[2] / 2 - (300 + side / 2) / 640) < 0.03
    for n, shot in enumerate(SHOTS):
        assert detect_faces(_gray(cg._background(shot.background, (640, 360), n))) == []


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, cg.FaceVideo]:
    root = tmp_path_factory.mktemp("reframe")
    return root, cg.face_video(root / "faces.mp4", SHOTS)


def _clip(start: float, end: float) -> FoundClip:
    return FoundClip(rank=1, start=start, end=end, first_sentence=0, last_sentence=0, topic=0, score=50.0,
                     components={}, reasons=(), title="t", text="t")


def _run(root: Path, start: float, end: float, **params) -> Reframe:
    ctx = media_ctx(root)
    source = SourceRef(path="faces.mp4", asset_id="asset_x")
    info = probe(source, ctx=ctx)
    return reframe(source, info, _clip(start, end), params=ReframeParams(**params), ctx=ctx)


def _window_at(plan: Reframe, t: float):
    """The crop shown at ``t`` seconds into the clip (keys are held until the next)."""
    return [c for c in plan.crops if c.t <= t + 1e-9][-1]


def test_a_face_off_centre_stays_inside_the_9x16_crop(video: tuple[Path, cg.FaceVideo]) -> None:
    root, made = video
    plan = _run(root, 0.0, 12.0)
    assert plan.shots == pytest.approx(made.cuts, abs=0.11)
    width = crop_size(made.size, cg.Fraction(9, 16))[0]
    inside = total = 0
    for t, box in made.faces:
        if box is None:
            continue
        window = _window_at(plan, t)
        assert window.width == pytest.approx(width, abs=1e-3) and window.height == 1.0
        total += 1
        inside += window.x - 1e-6 <= box[0] and box[0] + box[2] <= window.x + window.width + 1e-6
    assert total > 80 and inside / total >= 0.95, f"the face is inside the crop in {inside}/{total} frames"
    # A centred window would have lost the face in most of these frames: the test can fail.
    centred = (1 - width) / 2
    assert sum(centred <= b[0] and b[0] + b[2] <= centred + width for _, b in made.faces if b) / total < 0.5


def test_the_crop_holds_within_a_shot_and_is_centred_without_a_face(video: tuple[Path, cg.FaceVideo]) -> None:
    root, made = video
    plan = _run(root, 0.0, 12.0)
    starts = [0.0, *made.cuts]
    # One window per shot (or fewer, where two shots frame alike), each starting at a cut: a crop
    # path held between its keys never moves inside a shot.
    assert all(any(abs(c.t - s) < 0.11 for s in starts) for c in plan.crops), plan.crops
    assert len(plan.crops) == 4
    nobody = _window_at(plan, 7.5)
    assert nobody.face is None and nobody.x == pytest.approx((1 - nobody.width) / 2, abs=1e-3)
    assert _window_at(plan, 1.0).x < 0.05 and _window_at(plan, 5.0).x > 0.6


def test_a_clip_inside_one_shot_has_one_window(video: tuple[Path, cg.FaceVideo]) -> None:
    root, _ = video
    plan = _run(root, 4.5, 6.8)
    assert plan.shots == () and len(plan.crops) == 1
    (window,) = plan.crops
    assert window.t == 0.0 and window.face is not None and window.x > 0.6
    # Every frame of the range was looked at (10 fps, no B-frames to skip).
    assert plan.frames_seen == pytest.approx(23, abs=1)
