"""Cache keys without a cluster: what changes a render segment's key and what does not, files by content, and the
load-time check that a cached node's operator declares a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from operators.registry import OperatorRegistry
from operators.render.mix import mix_inputs
from operators.render.plan import PlanParams, render_plan
from operators.render.segment import EncodeParams, segment_inputs
from operators.render.timeline import RenderOutput, Timeline
from operators.storage import Storage
from operators.types import SourceRef
from pipelines.cache.identity import FileIdentities, Upstream, derive_key
from pipelines.errors import GraphError
from pipelines.loader import parse_graph
from tests.mediagen import make_clip, media_ctx
from tests.render_testing import probed_assets


def _timeline(words: list[str], *, width: int = 160, fps: int = 10, text_at: float = 0.5) -> dict[str, Any]:
    return {"canvas": {"width": width, "height": 96, "fps": fps},
            "tracks": [{"type": "video", "clips": [{"asset": "a1", "in": 0, "out": 6, "fit": "fill"}]},
                       {"type": "text", "clips": [{"text": w, "at": 2 * k + text_at, "duration": 0.5}
                                                  for k, w in enumerate(words)]}]}


def _keys(tmp_path: Path, timeline: dict[str, Any], output: RenderOutput | None = None) -> list[str]:
    """The key of every segment (2 s each) of ``timeline``, as the runner derives them."""
    ctx = media_ctx(tmp_path)
    assets = probed_assets(ctx, a1="a.mp4")
    plan = render_plan(Timeline.model_validate(timeline).with_assets(assets), params=PlanParams(segment_seconds=2),
                       ctx=ctx)
    files = FileIdentities(ctx.storage)
    return [derive_key("render.segment", 1, EncodeParams(), segment_inputs(plan, s, output), files)
            for s in plan.segments]


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    make_clip(tmp_path / "a.mp4", seconds=6.0, size=(160, 96), fps="10", audio=False)
    return tmp_path


def test_a_segment_key_hangs_on_its_own_frames_and_on_every_global_setting(media: Path) -> None:
    base = _keys(media, _timeline(["one", "two", "three"]))
    assert len(set(base)) == 3
    assert _keys(media, _timeline(["one", "two", "three"])) == base  # deterministic
    edited = _keys(media, _timeline(["one", "TWO", "three"]))
    assert [a == b for a, b in zip(base, edited, strict=True)] == [True, False, True]
    for changed in (_keys(media, _timeline(["one", "two", "three"], width=192)),
                    _keys(media, _timeline(["one", "two", "three"], fps=20)),
                    _keys(media, _timeline(["one", "two", "three"]), RenderOutput(crf=21))):
        assert set(changed).isdisjoint(base)


def test_a_source_file_counts_by_its_content_identity(media: Path) -> None:
    files = FileIdentities(Storage(str(media)))
    before = derive_key("media.probe", 1, {}, {"source": SourceRef(path="a.mp4")}, files)
    make_clip(media / "a.mp4", seconds=5.0, size=(160, 96), fps="10", audio=False)  # replaced: another size
    after = derive_key("media.probe", 1, {}, {"source": SourceRef(path="a.mp4")}, files)
    assert before != after
    assert derive_key("media.probe", 2, {}, {"source": SourceRef(path="a.mp4")}, files) != after  # the version
    # A job's own file counts by its SHA-256, the job left out: two jobs that made the same bytes share keys.
    for job in ("job_1", "job_2"):
        (media / "jobs" / job).mkdir(parents=True)
        (media / "jobs" / job / "x.wav").write_bytes(b"same bytes")
    one, two = (derive_key("speech.vad", 1, {}, {"audio": SourceRef(path=f"jobs/{job}/x.wav")}, files)
                for job in ("job_1", "job_2"))
    assert one == two
    assert derive_key("speech.vad", 1, {}, {"audio": Upstream("k1")}, files) != \
        derive_key("speech.vad", 1, {}, {"audio": Upstream("k2")}, files)


def test_the_mix_key_ignores_pictures_and_captions(media: Path) -> None:
    ctx = media_ctx(media)
    assets = probed_assets(ctx, a1="a.mp4")
    plans = [render_plan(Timeline.model_validate(_timeline(words)).with_assets(assets), params=PlanParams(), ctx=ctx)
             for words in (["a"], ["b"])]
    files = FileIdentities(ctx.storage)
    keys = {derive_key("render.mix_audio", 1, {}, mix_inputs(plan), files) for plan in plans}
    assert len(keys) == 1


def test_cache_true_needs_an_operator_version() -> None:
    registry = OperatorRegistry()
    registry.register("t.plain", lambda value: value)
    registry.register("t.versioned", lambda value: value, version=2)
    text = ("name: g\nnodes:\n  a: {op: t.versioned, cache: true, inputs: {value: 1}}\n"
            "  b:\n    op: t.plain\n    cache: true\n    inputs: {value: $a}\n")
    with pytest.raises(GraphError) as caught:
        parse_graph(text, file="g.yaml", registry=registry)
    assert str(caught.value) == ("g.yaml:6: node 'b': cache: true needs operator 't.plain' to declare a version "
                                 "(@operator(\"t.plain\", version=1)), part of every cache key")
    with pytest.raises(ValueError, match="version must be a positive integer"):
        registry.register("t.bad", lambda value: value, version=0)


