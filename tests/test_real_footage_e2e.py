"""Real footage's awkward properties through the ingest API (issue 19): an MPEG-TS capture and a damaged MP4.

Real Redis, a real Dask LocalCluster and media made by ``tests.footagegen``; the outputs are read back
as a client gets them and checked with PyAV: frame counts, sync on the sources' markers, the log.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
from litestar.testing import TestClient

from tests.conftest import wait_for
from tests.footagegen import damage_mdat, make_dense_clip, make_ts, marker_times

FAST = {"preset": "ultrafast", "crf": 30, "audio_bitrate": 64000}


def _ingest(client: TestClient[Any], path: Path, content_type: str) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = client.post("/assets/?project_id=proj_e2e", files={"file": (path.name, fh, content_type)})
    assert response.status_code == 201, response.text
    body = {"project_id": "proj_e2e", **FAST, "source_asset_id": response.json()["id"], "renditions": [120],
            "chunk_seconds": 1}
    response = client.post("/jobs/?job_type=ingest", json=body)
    assert response.status_code == 202, response.text
    return wait_for(client, response.json()["id"], timeout=120)


def _proxy(client: TestClient[Any], done: dict[str, Any]) -> dict[str, Any]:
    (record,) = done["result_payload"]["outputs"]["proxy"]
    data = client.get(f"/assets/{record['id']}/content").content
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="gray")) for f in c.decode(v)]
    with av.open(io.BytesIO(data)) as c:
        a = c.streams.audio[0]
        # As a player does: past packets that do not decode (a copied AAC track would keep the damage).
        decoded = [f for p in c.demux(a) for f in _decode_or_skip(p)]
        audio_start, rate = float(decoded[0].pts * a.time_base), a.sample_rate
        # Each frame at its own time, so the skipped packets leave silence rather than move what follows.
        first = decoded[0].pts
        audio = np.zeros(decoded[-1].pts - first + decoded[-1].samples, np.float32)
        for f in decoded:
            audio[f.pts - first:f.pts - first + f.samples] = f.to_ndarray()[0]
    flashes, beeps = marker_times(frames, audio, rate, audio_start)
    return {"frames": frames, "flashes": flashes, "beeps": beeps}


def _decode_or_skip(packet: Any) -> list[Any]:
    try:
        return packet.decode()
    except (av.error.InvalidDataError, av.error.PermissionError):
        return []


def _drift(flashes: list[float], beeps: list[float]) -> float:
    return max(min(abs(f - b) for b in beeps) for f in flashes)


def test_an_mpeg_ts_capture_with_one_keyframe_ingests_in_sync(client: TestClient[Any], tmp_path: Path) -> None:
    make_ts(tmp_path / "capture.ts", seconds=3.0, start=1.4, audio_lead=0.04, gop=1000)
    done = _ingest(client, tmp_path / "capture.ts", "video/mp2t")
    assert done["status"] == "completed", done["error_message"]
    assert done["result_payload"]["outputs"]["poster"]["size"] > 0
    proxy = _proxy(client, done)
    assert len(proxy["frames"]) == 75 and proxy["frames"][0][0] == 0.0
    assert len(proxy["flashes"]) == len(proxy["beeps"]) == 3
    assert _drift(proxy["flashes"], proxy["beeps"]) < 0.04  # under one frame at 25 fps


def test_a_file_with_64_kib_of_garbage_ingests_and_the_log_counts_the_damage(client: TestClient[Any],
                                                                            tmp_path: Path) -> None:
    make_dense_clip(tmp_path / "damaged.mp4", seconds=4.0)
    damage_mdat(tmp_path / "damaged.mp4", 64 * 1024)
    done = _ingest(client, tmp_path / "damaged.mp4", "video/mp4")
    assert done["status"] == "completed", done["error_message"]
    proxy = _proxy(client, done)
    assert len(proxy["frames"]) == 120
    assert _drift(proxy["flashes"], proxy["beeps"]) < 1 / 30
    messages = [e["message"] for e in done["result_payload"]["log"]]
    assert any("damaged video packets could not be decoded" in m for m in messages), messages
