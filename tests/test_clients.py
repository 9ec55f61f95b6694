"""Front ends on the API as they are built (issue 21): a TypeScript client generated from the served
OpenAPI document type-checks what it should and refuses what it should not, and a page on another
origin, in headless Chromium, calls the API with a token, follows a job through signed SSE and
WebSocket URLs, and plays an exported HLS package from its signed master URL with hls.js."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis as redis_sync
from distributed import LocalCluster
from litestar.testing import TestClient

from scheduler.wiring.redis_server import EmbeddedRedis
from tests.browser import run_page
from tests.conftest import ROOT
from tests.mediagen import make_clip
from tests.procs import Proc, free_port

CLIENTS = ROOT / "tests" / "clients"
BIN = CLIENTS / "node_modules" / ".bin"
TOKEN = "t0k-clients"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _node_tool(name: str) -> str:
    tool = BIN / name
    assert tool.exists(), f"{tool} is missing: make client-deps (npm install in tests/clients)"
    return str(tool)


def _tsc(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_node_tool("tsc"), "-p", str(folder / "tsconfig.json")], capture_output=True, text=True,
                          timeout=180)


def test_a_generated_typescript_client_types_payloads_outputs_and_downloads(client: TestClient[Any],
                                                                            tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_bytes(client.get("/schema/openapi.json").content)
    generated = subprocess.run([_node_tool("openapi-typescript"), str(tmp_path / "openapi.json"), "-o",
                                str(tmp_path / "api.d.ts"), "--default-non-nullable", "false"],
                               capture_output=True, text=True, timeout=180)
    assert generated.returncode == 0, generated.stderr
    for name in ("typed_client.ts", "tsconfig.json"):
        shutil.copy(CLIENTS / name, tmp_path / name)
    checked = _tsc(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Each refusal bites: fix the misspelt key and tsc reports its @ts-expect-error as unused.
    source = (tmp_path / "typed_client.ts").read_text()
    (tmp_path / "typed_client.ts").write_text(source.replace("{ projct_id: 42 }", '{ project_id: "p" }'))
    unused = _tsc(tmp_path)
    assert unused.returncode != 0 and "TS2578" in unused.stdout, unused.stdout


class _Page(http.server.SimpleHTTPRequestHandler):
    """The front end's origin: the page, and hls.js from npm."""

    def translate_path(self, path: str) -> str:
        name = path.split("?")[0].lstrip("/")
        if name == "hls.js":
            return str(CLIENTS / "node_modules" / "hls.js" / "dist" / "hls.js")
        return str(CLIENTS / "page.html")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def page_origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Page))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture()
def api(redis_server: EmbeddedRedis, dask_cluster: LocalCluster, tmp_path: Path, page_origin: str) -> Iterator[Proc]:
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    with redis_sync.Redis.from_url(url) as r:
        r.flushdb()
    env = {"HOST": "127.0.0.1", "PORT": str(free_port()), "REDIS_URL": url, "GRAPHS_DIR": str(ROOT / "graphs"),
           "DASK_SCHEDULER_ADDRESS": dask_cluster.scheduler_address, "DATA_DIR": str(tmp_path / "data"),
           "API_TOKENS": TOKEN, "CORS_ALLOW_ORIGINS": page_origin, "LOG_LEVEL": "warning"}
    proc = Proc("server", env, tmp_path / "server.log").start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _exported(api: Proc, tmp_path: Path) -> dict[str, Any]:
    clip = make_clip(tmp_path / "talk.mp4", seconds=4.0, size=(320, 180), fps="30", gop=30)
    asset = httpx.post(f"{api.url}/v1/assets/?project_id=web&filename=talk.mp4", content=clip.read_bytes(),
                       headers=AUTH, timeout=30).json()
    job = httpx.post(f"{api.url}/v1/jobs/?job_type=export", headers=AUTH, timeout=30, json={
        "project_id": "web", "source_asset_id": asset["id"], "loudness": None,
        "presets": [{"name": "hls", "ladder": [180, 144], "segment_seconds": 2, "gop_seconds": 1}]}).json()
    deadline = time.monotonic() + 120
    while (record := httpx.get(f"{api.url}/v1/jobs/{job['id']}", headers=AUTH, timeout=10).json())["status"] \
            not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert record["status"] == "completed", record
    return record  # type: ignore[no-any-return]


def _sign(api: Proc, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{api.url}/v1/signed-urls", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_page_on_another_origin_follows_a_job_and_plays_its_hls_export(api: Proc, page_origin: str,
                                                                         tmp_path: Path) -> None:
    job = _exported(api, tmp_path)
    master = _sign(api, {"asset_id": job["result_payload"]["outputs"]["hls"]["id"]})["url"]
    start = job["result_payload"]["outputs"]["hls"]["meta"]["start"]
    assert 0 <= start < 0.1, start
    live = _sign(api, {"job_id": job["id"]})
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in {
        "api": api.url, "token": TOKEN, "project": "web", "events": live["events_url"], "ws": live["ws_url"],
        "master": master, "play": 3.0}.items())
    out = run_page(f"{page_origin}/page.html?{query}", timeout=90)
    assert out["jobs_status"] == 200, out  # CORS with the bearer token: preflight and answer
    assert out["first_event"] == "completed" and out["ws_status"] == "completed", out
    assert out["mse_h264"], "this Chromium cannot play H.264 through MSE"
    assert out["levels"] == 2, out
    # No error but, on a loaded machine, a stall before the first frame (which sits at the package's start, a few
    # ms in: fMP4 has no negative times) that hls.js then skips, landing 50 ms past it ("seeking from 0 to
    # <start + 0.05>"): never a fetch error (a 404 on a relative URI), never a fatal one, never a hole past the
    # start (the A/V offset that made hls.js seek over holes).
    later = [e for e in out["errors"] if not (e.startswith("mediaError:buffer") and ":false@" in e
                                               and float(e.rsplit("@", 1)[1]) <= start + 0.06)]
    assert later == [], (start, out["errors"], out["events"])
    assert out["played"] >= 3.0 and abs(out["duration"] - 4.0) < 0.2, out
