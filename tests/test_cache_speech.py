"""The result cache with generate_clip: a second job on the same source transcribes, embeds and reframes nothing.

Real Redis, real Dask workers, tiny.en, ONNX embeddings; the source is a small talk video made here (espeak). What
ran is read from the Dask scheduler itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from distributed import LocalCluster
from litestar.testing import TestClient

from tests import clipgen as cg
from tests import speechgen as sg
from tests.cache_testing import log_lines, task_stream
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)

PROJECT = "proj_cache_clips"
SETTINGS = {"min_seconds": 8, "max_seconds": 20, "max_clips": 2, "prompt": "baking bread", "height": 640}
#: The nodes whose work the cache keeps: the probe, the audio, VAD, transcription, loudness, embeddings, faces.
CACHED = ("video", "audio", "vad", "transcribe", "loudness", "find", "reframe")


@pytest.fixture(scope="module")
def talk_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    talk = cg.topic_talk(("pricing", "bread"))
    half = round(talk.composed.duration / 2, 1)
    shots = [cg.Shot(half, 0.2, (60, 90, 140)), cg.Shot(round(talk.composed.duration - half + 0.3, 1), 0.75,
                                                        (170, 150, 110))]
    made = cg.face_video(tmp_path_factory.mktemp("talk") / "talk.mp4", shots, size=(320, 180),
                         audio=talk.composed.audio)
    return made.path.read_bytes()


def _run(client: TestClient[Any], source: str) -> dict[str, Any]:
    response = client.post("/jobs/?job_type=generate_clip",
                           json={"project_id": PROJECT, "source_asset_id": source, **SETTINGS})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=240)
    assert job["status"] == "completed", job["error_message"]
    return job


def test_generate_clip_twice_transcribes_and_embeds_once(client: TestClient[Any], talk_video: bytes,
                                                         dask_cluster: LocalCluster) -> None:
    uploaded = client.post(f"/assets/?project_id={PROJECT}&filename=talk.mp4", content=talk_video)
    assert uploaded.status_code == 201, uploaded.text
    source = uploaded.json()["id"]
    with task_stream(dask_cluster) as stream:
        first = _run(client, source)
        second = _run(client, source)
    for node in ("transcribe", "find", "reframe", "vad"):
        assert stream.ran(f"{node}-{first['id']}"), node  # the first job did the work...
        assert stream.ran(f"{node}-{second['id']}") == [], node  # ...the second none of it
    ran_second = {key.rsplit(f"-{second['id']}", 1)[0] for key in stream.keys if second["id"] in key}
    assert ran_second.isdisjoint(CACHED), ran_second
    cache = second["result_payload"]["cache"]
    assert cache["misses"] == 0 and cache["hits"] == first["result_payload"]["cache"]["misses"] > len(CACHED)
    assert any(line.startswith(f"Cache: {cache['hits']} of {cache['hits']} cached tasks") for line in log_lines(second))
    # The same clips, proposed again as new clip versions of this job.
    fields = ("start", "end", "duration", "score", "components", "reasons", "title", "text")
    clips = [c["result_payload"]["outputs"]["clips"] for c in (first, second)]
    assert [{k: c[k] for k in fields} for c in clips[0]] == [{k: c[k] for k in fields} for c in clips[1]]
    assert {c["clip_version_id"] for c in clips[0]}.isdisjoint(c["clip_version_id"] for c in clips[1])
    transcripts = [client.get(job["result_payload"]["outputs"]["transcript"]["url"]).json() for job in (first, second)]
    assert transcripts[0] == transcripts[1] and transcripts[0]["segments"]
