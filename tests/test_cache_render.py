"""The result cache with renders, end to end: a real Redis, a real Dask LocalCluster, media made here, outputs decoded.

A 30 s timeline (160x96 at 10 fps, one word of captions every 3 s, segments of 3 s) is rendered; what ran on
the cluster is read from the Dask scheduler itself (every task that went from processing to memory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis as redis_sync
from distributed import LocalCluster
from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app
from tests.cache_testing import (caption_timeline, decode, log_lines, make_transcript, render, task_stream, upload)
from tests.conftest import wait_for
from tests.mediagen import make_clip

SEGMENTS = 10  # 30 s in segments of 3 s
CAP = 100_000  # two segments (~36 kB each); never the mix (~565 kB: over the cap, not kept)
WORDS = [f"word{k}" for k in range(SEGMENTS)]


def _words(text: list[str]) -> list[tuple[str, float, float]]:
    """Word k is spoken at 3k + 0.5 s for half a second: inside segment k, alone on screen."""
    return [(w, 3 * k + 0.5, 3 * k + 1.0) for k, w in enumerate(text)]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_clip(tmp_path_factory.mktemp("cache") / "talk.mp4", seconds=30.0, size=(160, 96), fps="10")
    return path.read_bytes()


def _setup(client: TestClient[Any], settings: Settings, source: bytes) -> tuple[str, str, str]:
    """The video asset, its transcript, and the transcript with word 3 changed."""
    video = upload(client, source, "talk.mp4")
    edited = list(WORDS)
    edited[3] = "changed"
    return (video, make_transcript(settings, "a.json", _words(WORDS)),
            make_transcript(settings, "b.json", _words(edited)))


def _entries(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "media" / "cache").rglob("files/render/segments/*.mp4"))


def test_a_caption_edit_encodes_one_segment_and_matches_a_cold_render(
        client: TestClient[Any], settings: Settings, source: bytes, dask_cluster: LocalCluster) -> None:
    video, original, edited = _setup(client, settings, source)
    with task_stream(dask_cluster) as stream:
        first = render(client, caption_timeline(video, original))
        assert first["result_payload"]["cache"] == {"hits": 0, "misses": SEGMENTS + 1, "seconds_saved": 0.0}
        second = render(client, caption_timeline(video, edited))
    cache = second["result_payload"]["cache"]
    assert (cache["hits"], cache["misses"]) == (SEGMENTS, 1)  # 9 segments and the mix served, segment 4 encoded
    assert stream.ran(f"segment-{second['id']}") == [f"segment-{second['id']}-00003"]
    assert stream.ran(f"audio-{second['id']}") == []
    assert len(stream.ran(f"segment-{first['id']}")) == SEGMENTS
    summary = next(line for line in log_lines(second) if line.startswith("Cache: "))
    assert re.match(rf"Cache: {SEGMENTS} of {SEGMENTS + 1} cached tasks served from the cache \(audio 1, segment 9\)",
                    summary), summary
    assert sum("Rendered segment" in line for line in log_lines(second)) == 1

    # A cold render of the edited timeline (the cache emptied first) gives the same frames and samples.
    cleared = client.delete("/cache")
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["entries"] == SEGMENTS + 2 and _entries(settings) == []
    cold = render(client, caption_timeline(video, edited))
    assert cold["result_payload"]["cache"]["hits"] == 0
    (hot_frames, hot_audio), (cold_frames, cold_audio) = decode(client, second), decode(client, cold)
    assert len(hot_frames) == len(cold_frames) == 300
    assert all(np.array_equal(a, b) for a, b in zip(hot_frames, cold_frames, strict=True))
    assert np.array_equal(hot_audio, cold_audio)
    # ...and the edit shows: segment 4's frames differ from the first render's, the others do not.
    old_frames, _ = decode(client, first)
    differs = [k // 30 for k in range(300) if not np.array_equal(old_frames[k], hot_frames[k])]
    assert differs and set(differs) == {3}

    metrics = client.get("/metrics").text
    assert re.search(r"^ave_cache_hits_total 10\.0$", metrics, re.M), metrics
    assert re.search(r"^ave_cache_misses_total 23\.0$", metrics, re.M)
    assert re.search(r"^ave_cache_entries 11\.0$", metrics, re.M)


def test_two_identical_renders_at_once_encode_each_segment_once(
        client: TestClient[Any], settings: Settings, source: bytes, dask_cluster: LocalCluster) -> None:
    video, original, _ = _setup(client, settings, source)
    timeline = caption_timeline(video, original)
    with task_stream(dask_cluster) as stream:
        jobs = [render(client, timeline, wait=False) for _ in range(2)]
        done = [wait_for(client, job["id"], timeout=180) for job in jobs]
    assert [job["status"] for job in done] == ["completed", "completed"]
    segments = [k for k in stream.keys if k.startswith("segment-")]
    assert len(segments) == SEGMENTS, segments  # one encode per segment, across both jobs
    assert sum(job["result_payload"]["cache"]["hits"] for job in done) == SEGMENTS + 1
    first, second = (decode(client, job) for job in done)
    assert all(np.array_equal(a, b) for a, b in zip(first[0], second[0], strict=True))
    assert len(_entries(settings)) == SEGMENTS  # no second entry, no half-written one


def test_under_a_small_cap_entries_are_evicted_and_results_stay_right(
        settings: Settings, source: bytes) -> None:
    small = settings.model_copy(update={"cache_max_bytes": CAP})
    with TestClient(app=create_app(small), timeout=30) as client:
        video, original, _ = _setup(client, small, source)
        timeline = caption_timeline(video, original)
        first = render(client, timeline)
        stored = redis_sync.Redis.from_url(small.redis_url, decode_responses=True)
        try:
            size = int(stored.get("ave:cache:bytes") or 0)
            evicted = float(stored.hget("ave:metrics:cache", "evictions") or 0)
        finally:
            stored.close()
        on_disk = sum(p.stat().st_size for p in (small.data_dir / "media" / "cache").rglob("*") if p.is_file())
        assert 0 < size <= CAP and on_disk <= CAP and evicted > 0, (size, on_disk, evicted)
        second = render(client, timeline)
        cache = second["result_payload"]["cache"]
        assert cache["hits"] >= 1 and cache["misses"] >= 1, cache
        a, b = decode(client, first), decode(client, second)
        assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True)) and np.array_equal(a[1], b[1])


def test_a_corrupt_entry_is_never_served(client: TestClient[Any], settings: Settings, source: bytes,
                                         dask_cluster: LocalCluster) -> None:
    video, original, _ = _setup(client, settings, source)
    timeline = caption_timeline(video, original)
    first = render(client, timeline)
    entries = {p.name: p for p in _entries(settings)}
    flipped, cut = entries["00002.mp4"], entries["00005.mp4"]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash tells
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:-100])  # shorter: the size tells
    with task_stream(dask_cluster) as stream:
        second = render(client, timeline)
    assert stream.ran(f"segment-{second['id']}") == [f"segment-{second['id']}-00002", f"segment-{second['id']}-00005"]
    assert second["result_payload"]["cache"]["hits"] == SEGMENTS - 1
    assert sum("is unusable" in line for line in log_lines(second)) == 2
    a, b = decode(client, first), decode(client, second)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    # Replaced by good entries: a third render is served whole.
    third = render(client, timeline)
    assert third["result_payload"]["cache"] == {"hits": SEGMENTS + 1, "misses": 0,
                                                "seconds_saved": third["result_payload"]["cache"]["seconds_saved"]}
    assert re.search(r"^ave_cache_corrupt_total 2\.0$", client.get("/metrics").text, re.M)


