"""A browser's MediaRecorder WebM (no duration, no cues) ingests and exports like any other source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
from litestar.testing import TestClient

from tests.conftest import wait_for
from tests.mediagen import make_recorder_webm


def test_a_webm_without_duration_or_cues_is_ingested_in_sync(client: TestClient[Any], media_root: Path) -> None:
    make_recorder_webm(media_root / "recording.webm", seconds=3.0)
    with av.open(str(media_root / "recording.webm")) as container:  # what makes it a MediaRecorder file
        assert container.duration is None and all(s.duration is None for s in container.streams)
    response = client.post("/jobs/?job_type=ingest", json={
        "project_id": "proj_webm", "source_uri": "recording.webm", "renditions": [120], "preset": "ultrafast"})
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"], timeout=90)
    assert done["status"] == "completed", done["error_message"]
    info = done["result_payload"]["outputs"]["media_info"]
    assert abs(info["duration"] - 3.0) < 0.05
    audio = next(s for s in info["streams"] if s.get("sample_rate"))
    assert abs(audio["duration"] - 3.0) < 0.05, audio
    (proxy,) = done["result_payload"]["outputs"]["proxy"]
    content = client.get(f"/assets/{proxy['id']}/content").content
    (media_root / "proxy.mp4").write_bytes(content)
    with av.open(str(media_root / "proxy.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio, "the proxy lost its sound"
    assert abs(frames - 90) <= 1


def test_a_webm_without_duration_or_cues_exports_in_sync(client: TestClient[Any], media_root: Path) -> None:
    make_recorder_webm(media_root / "recorded.webm", seconds=3.0)
    response = client.post("/jobs/?job_type=export", json={
        "project_id": "proj_webm", "source_uri": "recorded.webm", "presets": ["mp4-720p"], "loudness": None})
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"], timeout=120)
    assert done["status"] == "completed", done["error_message"]
    asset = done["result_payload"]["outputs"]["mp4-720p"]
    (media_root / "export.mp4").write_bytes(client.get(f"/assets/{asset['id']}/content").content)
    with av.open(str(media_root / "export.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base) if audio.duration else 0.0
    assert abs(frames - 90) <= 1
    assert abs(seconds - 3.0) < 0.05
