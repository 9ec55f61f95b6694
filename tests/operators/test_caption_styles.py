"""Caption style presets, keywords, safe areas and scripts, checked on the pictures the renderer draws.

Each test plans a tiny 9:16 timeline (a grey clip and a transcript) with the render operators and looks at the
caption pictures of given frames, placed as ``render.segment`` places them; the safe-area test renders the video
for real and reads the decoded frames.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from operators.media.info import AssetMedia
from operators.render.plan import Overlay, PlanParams, RenderPlan, render_plan
from operators.render.resolve import TimelineError, frame_of
from operators.render.styling.keywords import keyword_scores
from operators.render.styling.presets import SAFE_AREAS
from operators.render.text import rasterize
from operators.render.timeline import Timeline
from tests.mediagen import media_ctx
from tests.render_testing import probed_assets, render_timeline

W, H = 320, 568
GREY = 128
WORDS = [("alpha", 0.1, 0.5), ("beta", 0.6, 1.2), ("gamma", 1.3, 1.8)]


def _grey_clip(path: Path, seconds: float = 2.0) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1"}
        picture = np.full((H, W, 3), GREY, dtype=np.uint8)
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _transcript(segments: list[list[tuple[str, float, float]]], language: str = "en") -> dict[str, Any]:
    return {"language": language, "duration": 2.0, "segments": [
        {"start": s[0][1], "end": s[-1][2], "text": " ".join(w for w, _, _ in s),
         "words": [{"word": f" {w}", "start": a, "end": b, "probability": 0.9} for w, a, b in s]} for s in segments]}


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Any, dict[str, AssetMedia]]:
    ctx = media_ctx(tmp_path)
    _grey_clip(tmp_path / "g.mp4")
    return ctx, probed_assets(ctx, g="g.mp4")


def _with_transcript(ctx: Any, assets: dict[str, AssetMedia], body: dict[str, Any], name: str = "t") -> None:
    (Path(ctx.storage.local_path(f"{name}.json"))).write_text(json.dumps(body))
    assets[name] = AssetMedia(id=name, path=f"{name}.json", kind="transcript", content_type="application/json")


def _timeline(track: dict[str, Any], seconds: float = 2.0) -> dict[str, Any]:
    return {"canvas": {"width": W, "height": H, "fps": 30},
            "tracks": [{"type": "video", "clips": [{"asset": "g", "out": seconds}]},
                       {"type": "captions", "transcript": "t", **track}]}


def _plan(setup: Any, track: dict[str, Any], words: list[list[tuple[str, float, float]]] | None = None) -> RenderPlan:
    ctx, assets = setup
    _with_transcript(ctx, assets, _transcript(words or [WORDS]))
    render_input = Timeline.model_validate(_timeline(track)).with_assets(assets)
    return render_plan(render_input, params=PlanParams(), ctx=ctx)


def _at(plan: RenderPlan, seconds: float) -> Overlay:
    k = frame_of(Fraction(repr(seconds)), Fraction(30))
    found = [o for o in plan.overlays if o.start <= k < o.end]
    assert len(found) == 1, (seconds, found)
    return found[0]


def _picture(overlay: Overlay) -> np.ndarray:
    return np.asarray(rasterize(overlay.lines, overlay.style))


def _near(img: np.ndarray, color: tuple[int, int, int], tol: int = 0) -> np.ndarray:
    """(row, col) of opaque pixels within ``tol`` of ``color``."""
    close = np.all(np.abs(img[..., :3].astype(int) - np.array(color)) <= tol, axis=-1) & (img[..., 3] == 255)
    return np.argwhere(close)


YELLOW, WHITE, PURPLE = (255, 212, 0), (255, 255, 255), (0x7C, 0x3A, 0xED)


def test_karaoke_fills_the_spoken_word_left_to_right(setup: Any) -> None:
    plan = _plan(setup, {"style": "karaoke", "size": 40})
    before, middle, after = (_picture(_at(plan, t)) for t in (0.62, 0.9, 1.25))
    counts = [len(_near(img, YELLOW)) for img in (before, middle, after)]
    # "alpha" is filled from the start of "beta"; "beta" fills as it is spoken; "gamma" not yet.
    assert counts[0] < counts[1] < counts[2], counts
    yellow, white = _near(middle, YELLOW)[:, 1], _near(middle, WHITE)[:, 1]
    assert len(white) and yellow.max() < white.max(), "the fill runs from the left"
    # Part way through "beta": white pixels of it lie left of the last yellow column too (it is half filled).
    runs = _at(plan, 0.9).lines[0]
    assert [r.fill for r in runs][:2] == [1.0, pytest.approx(0.5, abs=0.07)]
    assert before.shape == middle.shape == after.shape, "the picture never changes size as it fills"


def test_highlight_box_sits_behind_the_spoken_word(setup: Any) -> None:
    plan = _plan(setup, {"style": "highlight-box", "size": 40})
    centres = []
    for t in (0.3, 0.9, 1.5):
        box = _near(_picture(_at(plan, t)), PURPLE, tol=2)
        assert len(box) > 100, t
        centres.append(box[:, 1].mean())
    assert centres[0] < centres[1] < centres[2], "the box moves along with the spoken word"
    assert len({_picture(_at(plan, t)).shape for t in (0.3, 0.9, 1.5)}) == 1


def test_pop_words_appear_as_spoken_and_scale_in(setup: Any) -> None:
    plan = _plan(setup, {"style": "pop", "words_per_pop": 3, "max_chars": 30, "size": 40})
    ink = {t: int((_picture(_at(plan, t))[..., 3] > 0).sum()) for t in (0.3, 0.61, 0.66, 0.9)}
    assert ink[0.3] < ink[0.61] < ink[0.66] < ink[0.9], ink  # only "alpha"; "beta" small, larger, full size
    scales = [r.scale for r in _at(plan, 0.61).lines[0]]
    assert scales[0] == 1.0 and 0 < scales[1] < 1 and scales[2] == 0


def test_bold_upper_capitals_and_one_keyword_per_line_in_the_accent_colour(setup: Any) -> None:
    talk = [[("we", 0.1, 0.2), ("talk", 0.2, 0.3), ("about", 0.3, 0.4), ("pricing", 0.4, 0.6), ("pricing", 0.6, 0.8)],
            [("and", 0.9, 1.0), ("the", 1.0, 1.1), ("weather", 1.1, 1.3), ("today", 1.3, 1.5)],
            [("then", 1.5, 1.6), ("we", 1.6, 1.7), ("talk", 1.7, 1.8), ("again", 1.8, 1.9)]]
    assert next(iter(keyword_scores([[w for w, _, _ in s] for s in talk]))) == "pricing"
    plan = _plan(setup, {"style": "bold-upper", "size": 30, "accent_color": "#ff0000"}, talk)
    first = _at(plan, 0.5)
    texts = [r.text for line in first.lines for r in line]
    assert texts[:4] == ["WE", "TALK", "ABOUT", "PRICING"]
    for line in first.lines:
        assert sum(r.color is not None for r in line) <= 1
    assert {r.text for line in first.lines for r in line if r.color == (255, 0, 0, 255)} == {"PRICING"}
    assert len(_near(_picture(first), (255, 0, 0))) > 50, "the keyword is drawn in the accent colour"
    assert first.style.outline_width == 7 and first.style.font == "bundled:dejavu-sans-bold"
    # A timeline's own keywords win over the talk's.
    given = _plan(setup, {"style": "bold-upper", "size": 30, "keywords": ["weather"]}, talk)
    assert {r.text for o in given.overlays for line in o.lines for r in line if r.color} == {"WEATHER"}


def test_minimal_is_one_line_on_a_translucent_box_and_fields_override_presets(setup: Any) -> None:
    plan = _plan(setup, {"style": "minimal"})
    overlay = _at(plan, 0.3)
    track = plan.spec.captions[0].spec
    assert len(overlay.lines) == 1 and overlay.style.outline_width == 0 and track.size == 40
    img = _picture(overlay)
    assert img[0, 0, 3] == 0xA0 and img[-1, -1, 3] == 0xA0, "a translucent box behind the text"
    overridden = _plan(setup, {"style": "minimal", "size": 30, "background": None})
    assert overridden.spec.captions[0].spec.size == 30 and _at(overridden, 0.3).style.background is None


def test_greek_and_cyrillic_use_the_bundled_font_and_cjk_is_refused_without_one(setup: Any) -> None:
    words = [[("Привет", 0.1, 0.6), ("Ζωή", 0.7, 1.2)]]
    plan = _plan(setup, {"size": 40}, words)
    overlay = plan.overlays[0]
    assert overlay.style.font == "bundled:dejavu-sans"
    glyphs = {c: rasterize(((type(overlay.lines[0][0])(c),),), overlay.style).tobytes() for c in "ПЖΖω"}
    assert len(set(glyphs.values())) == 4, "each letter has its own glyph, not a missing-glyph box"

    ctx, assets = setup
    _with_transcript(ctx, assets, _transcript([[("你好", 0.1, 0.6)]], language="zh"))
    with pytest.raises(TimelineError) as caught:
        Timeline.model_validate(_timeline({})).with_assets(assets, storage=ctx.storage)
    (loc, message), = caught.value.problems
    assert loc == ("tracks", 1, "font")
    assert "Han (CJK)" in message and "'zh'" in message and "font" in message


def _caption_mask(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - GREY).max(axis=-1) > 60


@pytest.mark.parametrize("platform", ["tiktok", "none"])
def test_safe_area_keeps_captions_clear_of_the_app_interface(setup: Any, platform: str) -> None:
    ctx, assets = setup
    long = [(w, 0.1 + 0.15 * i, 0.22 + 0.15 * i) for i, w in enumerate(
        "these captions are long enough to fill two wide lines across the whole frame".split())]
    _with_transcript(ctx, assets, _transcript([long]))
    track = {"style": "karaoke", "size": 36, "margin": 0.0, "position": "bottom-right", "safe_area": platform}
    out = render_timeline(ctx, _timeline(track, seconds=1.0), assets)
    with av.open(str(ctx.storage.local_path(out.path))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mask = np.any([_caption_mask(f) for f in frames[6:]], axis=0)
    assert mask.sum() > 500, "captions are drawn"
    top, right, bottom, _ = SAFE_AREAS["tiktok"]
    unsafe = mask[: int(H * top)].sum() + mask[int(H * (1 - bottom)):].sum() + mask[:, int(W * (1 - right)):].sum()
    if platform == "tiktok":
        assert unsafe == 0, "no caption pixel in TikTok's interface"
    else:
        assert unsafe > 100, "without a safe area the same captions reach the edges"
    # Karaoke in the real video: the fill grows while a word is spoken.
    yellow = [int((np.abs(f.astype(int) - (255, 212, 0)).max(axis=-1) < 60).sum()) for f in frames]
    assert yellow[9] < yellow[20] < yellow[28], yellow
