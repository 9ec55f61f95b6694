"""Helpers of the result-cache tests: what ran on the Dask scheduler, transcript assets, renders, decoding."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
import numpy as np
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from litestar.testing import TestClient
from redis import asyncio as aioredis

from scheduler.records.assets import AssetStore
from scheduler.settings import Settings
from tests.conftest import wait_for

__all__ = ["PROJECT", "TaskStream", "caption_timeline", "decode", "log_lines", "make_transcript", "render",
           "task_stream", "upload"]

PROJECT = "proj_cache"
FAST = {"preset": "ultrafast", "crf": 30}


class TaskStream(SchedulerPlugin):
    """On the (in-process) Dask scheduler: the key of every task that ran on a worker and finished."""

    def __init__(self) -> None:
        self.name = f"test-task-stream-{uuid.uuid4().hex[:6]}"
        self.keys: list[str] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.keys.append(str(key))

    def ran(self, prefix: str) -> list[str]:
        return sorted(k for k in self.keys if k.startswith(prefix))


@contextmanager
def task_stream(cluster: LocalCluster) -> Iterator[TaskStream]:
    plugin = TaskStream()
    cluster.scheduler.add_plugin(plugin, name=plugin.name)
    try:
        yield plugin
    finally:
        cluster.scheduler.remove_plugin(name=plugin.name)


def upload(client: TestClient[Any], data: bytes, name: str) -> str:
    response = client.post(f"/assets/?project_id={PROJECT}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def make_transcript(settings: Settings, name: str, words: list[tuple[str, float, float]]) -> str:
    """A transcript asset as transcribe writes one (its JSON, kind ``transcript``)."""
    body = {"language": "en", "duration": words[-1][2], "segments": [{
        "start": words[0][1], "end": words[-1][2], "text": " ".join(w for w, _, _ in words),
        "words": [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words]}]}
    root = settings.data_dir / "media" / "transcripts"
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(body))

    async def create() -> str:
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            record = await AssetStore(redis).create(path=f"transcripts/{name}", kind="transcript", project_id=PROJECT,
                                                    content_type="application/json", size=len(json.dumps(body)))
            return str(record["id"])
        finally:
            await redis.aclose()

    return asyncio.run(create())


def caption_timeline(video: str, transcript: str, seconds: float = 30.0) -> dict[str, Any]:
    """A small timeline: one video clip of ``seconds`` with word-pop captions, one word at a time."""
    return {"canvas": {"width": 160, "height": 96, "fps": 10},
            "tracks": [{"type": "video", "clips": [{"asset": video, "in": 0, "out": seconds, "fit": "fill"}]},
                       {"type": "captions", "transcript": transcript, "style": "word-pop", "words_per_pop": 1,
                        "size": 24, "position": "bottom", "margin": 0.02}]}


def render(client: TestClient[Any], timeline: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
    response = client.post("/jobs/?job_type=render", json={"project_id": PROJECT, "timeline": timeline,
                                                           "output": FAST, "segment_seconds": 3})
    assert response.status_code == 202, response.text
    if not wait:
        return dict(response.json())
    job = wait_for(client, response.json()["id"], timeout=180)
    assert job["status"] == "completed", job["error_message"]
    return job


def decode(client: TestClient[Any], job: dict[str, Any]) -> tuple[list[np.ndarray], np.ndarray]:
    """The job's video output: every frame (RGB) and every audio sample."""
    data = client.get(job["result_payload"]["outputs"]["video"]["url"]).content
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(io.BytesIO(data)) as container:
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, samples


def log_lines(job: dict[str, Any]) -> list[str]:
    return [entry["message"] for entry in job["result_payload"]["log"]]
