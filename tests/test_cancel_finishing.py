"""A cancel that lands while a job is finishing never interrupts its rollback (issue: cancel while finishing).

The job's graph is done and its output published; the cancel arrives before its terminal write, which Redis
then refuses (the stored ``cancelled`` stands), and the rollback of what it published begins. The dispatcher's
watch loop sees ``cancelled`` meanwhile: it must not stop the task half-way through that rollback.
Real parts: the session's Redis and Dask cluster, the app in a TestClient, the ``parts`` graph.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from scheduler.dispatch.publishing import JobPublisher
from scheduler.records.assets import AssetStore
from scheduler.settings import Settings
from server.app import create_app
from tests.conftest import wait_until
from tests.retention_ops import add_parts_graph

PROJECT = "proj_finishing"


@pytest.fixture()
def graphs_dir(graphs_dir: Path) -> Path:
    add_parts_graph(graphs_dir)
    return graphs_dir


def test_a_cancel_during_the_rollback_lets_it_finish(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    publish, forget = JobPublisher.publish, AssetStore.forget
    forgotten: list[str] = []

    async def publish_then_cancelled(self: JobPublisher, *args: Any) -> Any:
        result = await publish(self, *args)
        # The user cancels right after the outputs were published, before the terminal write.
        await self.service.store.cancel(self.job_id, message="Cancelled by the user")
        return result

    async def slow_forget(self: AssetStore, asset_id: str) -> None:
        # Slower than the watch loop's 0.25 s round: it sees the job cancelled while this runs.
        await asyncio.sleep(1.0)
        await forget(self, asset_id)
        forgotten.append(asset_id)

    monkeypatch.setattr(JobPublisher, "publish", publish_then_cancelled)
    monkeypatch.setattr(AssetStore, "forget", slow_forget)
    with TestClient(app=create_app(settings), timeout=30) as client:
        job_id = client.post("/jobs/?job_type=parts", json={"project_id": PROJECT}).json()["id"]
        dispatcher = client.app.state.runtime.dispatcher
        wait_until(lambda: job_id in dispatcher.running_jobs or None, 10, "the job to start")
        wait_until(lambda: (job_id not in dispatcher.running_jobs) or None, 20, "the job to end")
        final = client.get(f"/jobs/{job_id}").json()
        listed = client.get(f"/assets/?project_id={PROJECT}").json()
    assert final["status"] == "cancelled"
    assert len(forgotten) == 1, "the rollback was interrupted before it forgot the published asset"
    assert listed == []
    folder = Path(settings.media_url) / "jobs" / job_id
    assert not [p for p in folder.rglob("*") if p.is_file()], "the job's files were left behind"
