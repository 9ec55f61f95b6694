"""Schemathesis (``--checks all``) against a live server with API tokens: any failure fails the test.

Every operation of the OpenAPI document (the ``/v1/`` routes) is called with generated requests, valid and
invalid, in the examples, coverage, fuzzing and stateful phases (the document's links lead from a created
job, asset or clip version to the operations that read it); each answer is checked against the document:
its status code is documented, its body fits the documented schema, its content type and headers are the
documented ones, invalid requests are refused, requests without (or with a wrong) token get 401, OPTIONS and
405s list the right methods. tests/schemathesis.toml says which POSTs may answer a valid-looking request with
a 422 (a payload that does not fit its job type's graph) and why. Bounded: a fixed seed, 15 examples per
operation, about 30 s on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from distributed import LocalCluster

from scheduler.wiring.redis_server import EmbeddedRedis
from tests.conftest import ROOT, TEST_GRAPHS
from tests.procs import Proc, free_port

TOKEN = "fuzz-token-5c1e0b"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
ST = Path(sys.executable).parent / "st"


@pytest.mark.timeout(240)
def test_schemathesis_finds_nothing(redis_server: EmbeddedRedis, dask_cluster: LocalCluster, tmp_path: Path) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    for path in (ROOT / "graphs").glob("*.yaml"):
        shutil.copy(path, graphs)
    shutil.copy(TEST_GRAPHS / "sleepy.yaml", graphs)
    url = redis_server.url.rsplit("/", 1)[0] + "/10"
    with redis_sync.Redis.from_url(url) as r:
        r.flushdb()
    env = {"HOST": "127.0.0.1", "PORT": str(free_port()), "REDIS_URL": url,
           "DASK_SCHEDULER_ADDRESS": dask_cluster.scheduler_address, "GRAPHS_DIR": str(graphs),
           "DATA_DIR": str(tmp_path / "data"), "RUN_DISPATCHER": "false", "API_TOKENS": TOKEN,
           "LOG_LEVEL": "warning", "SSE_HEARTBEAT_SECONDS": "0.5"}
    server = Proc("server", env, tmp_path / "server.log").start()
    try:
        server.wait_ready()
        schema = httpx.get(f"{server.url}/schema/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=10)
        assert schema.status_code == 200
        (tmp_path / "openapi.json").write_bytes(schema.content)
        operations = sum(1 for item in schema.json()["paths"].values() for method in item
                         if method in ("get", "post", "put", "patch", "delete", "head"))
        run = subprocess.run(
            [str(ST), "--config-file", str(CONFIG), "run", str(tmp_path / "openapi.json"), "--url", server.url,
             "--checks", "all", "--max-examples", "15", "--seed", "12", "--workers", "1", "--no-color"],
            cwd=tmp_path, env={**os.environ, "AVE_FUZZ_TOKEN": TOKEN}, capture_output=True, text=True, timeout=180,
        )
    finally:
        server.stop()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    assert f"{operations} selected / {operations} total" in output, output[-3000:]
    assert f"Tested: {operations}" in output, output[-3000:]
    assert "unhandled error" not in server.tail(400)
