"""Issue 12 through real HTTP: bounded bodies, bearer tokens, ownership, Idempotency-Key, /v1/ and metrics.

Three ``python -m server`` processes on loopback share one Redis database and the session's Dask cluster:

- ``a``: API_TOKENS, the dispatcher, a MODELS_DIR; metrics need a token.
- ``b``: API_TOKENS_FILE, METRICS_PUBLIC=true, APP_ENV=production, no dispatcher: it serves /metrics of jobs
  another process (``a``) runs.
- ``c``: no tokens (open, as before), APP_ENV=production (so it warns at start-up), no dispatcher.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from distributed import LocalCluster
from prometheus_client.parser import text_string_to_metric_families

from scheduler.wiring.redis_server import EmbeddedRedis
from tests.conftest import ROOT, TEST_GRAPHS
from tests.procs import Proc, free_port

TOKEN_A, TOKEN_B, TOKEN_FILE = "alpha-token-1d9a7c", "beta-token-88e2f0", "file-token-4b7e21"
WRONG = "wrong-token-000000"
TERMINAL = ("completed", "failed", "cancelled")
LIMIT = 1024 * 1024

RETRYING = """\
name: retrying
description: A task that always raises, retried twice by Dask before the job fails.
nodes:
  boom:
    op: util.fail
    retries: 2
    params: {message: "the input is not usable: test failure"}
"""


class Servers:
    def __init__(self, a: Proc, b: Proc, c: Proc, tmp: Path, models: Path) -> None:
        self.a, self.b, self.c, self.tmp, self.models = a, b, c, tmp, models


@pytest.fixture(scope="module")
def servers(redis_server: EmbeddedRedis, dask_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("hardening")
    graphs = tmp / "graphs"
    graphs.mkdir()
    for name in ("sleepy", "broken"):
        shutil.copy(TEST_GRAPHS / f"{name}.yaml", graphs)
    for name in ("ingest", "transcribe", "render"):
        shutil.copy(ROOT / "graphs" / f"{name}.yaml", graphs)
    (graphs / "retrying.yaml").write_text(RETRYING)
    # sleepy under a job type of its own, that only the metrics test submits: its counts are its own
    # (other tests post sleepy jobs and do not wait for them all).
    sleepy = (TEST_GRAPHS / "sleepy.yaml").read_text()
    (graphs / "metered.yaml").write_text(sleepy.replace("name: sleepy", "name: metered"))
    models = tmp / "models"
    model = models / "my-whisper"
    model.mkdir(parents=True)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (model / name).write_text("{}")
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text(f"# the tokens of server b\n\n{TOKEN_FILE}\n")
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    with redis_sync.Redis.from_url(url) as r:
        r.flushdb()
    base = {
        "HOST": "127.0.0.1",
        "REDIS_URL": url,
        "DASK_SCHEDULER_ADDRESS": dask_cluster.scheduler_address,
        "GRAPHS_DIR": str(graphs),
        "DATA_DIR": str(tmp / "data"),
        "MODELS_DIR": str(models),
        "LOG_LEVEL": "debug",
        "ACCESS_LOG": "true",
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "MAX_RUNNING_JOBS": "4",
    }
    a = Proc("server", {**base, "PORT": str(free_port()), "API_TOKENS": f"{TOKEN_A}, {TOKEN_B}"}, tmp / "a.log")
    b = Proc("server", {**base, "PORT": str(free_port()), "API_TOKENS_FILE": str(tokens_file),
                        "METRICS_PUBLIC": "true", "APP_ENV": "production", "RUN_DISPATCHER": "false"}, tmp / "b.log")
    c = Proc("server", {**base, "PORT": str(free_port()), "APP_ENV": "production", "RUN_DISPATCHER": "false"},
             tmp / "c.log")
    procs = [a, b, c]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready()
        yield Servers(a, b, c, tmp, models)
    finally:
        for proc in procs:
            proc.stop()


def auth(token: str | None = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def post_job(proc: Proc, job_type: str, payload: Any, token: str | None = TOKEN_A, prefix: str = "/v1",
             **kwargs: Any) -> httpx.Response:
    headers = {**auth(token), **kwargs.pop("headers", {})}
    return httpx.post(f"{proc.url}{prefix}/jobs/", params={"job_type": job_type, **kwargs.pop("params", {})},
                      json=payload, headers=headers, timeout=30, **kwargs)


def wait_done(proc: Proc, job_id: str, token: str | None = TOKEN_A, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = httpx.get(f"{proc.url}/v1/jobs/{job_id}", headers=auth(token), timeout=10).json()
        if record.get("status") in TERMINAL:
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished: {record}")


def upload(proc: Proc, data: bytes, project_id: str = "proj_a", token: str | None = TOKEN_A,
           **headers: str) -> httpx.Response:
    return httpx.post(f"{proc.url}/v1/assets/", params={"project_id": project_id, "filename": "clip.bin"},
                      content=data, headers={**auth(token), "Content-Type": "application/octet-stream", **headers},
                      timeout=30)


# -- 1. limits ---------------------------------------------------------------------------------------


def _padded(payload: dict[str, Any], size: int) -> bytes:
    """``payload`` as JSON padded with trailing spaces (still valid JSON) to exactly ``size`` bytes."""
    text = json.dumps(payload).encode()
    assert len(text) <= size
    return text + b" " * (size - len(text))


def test_json_bodies_at_the_limit_and_one_byte_over(servers: Servers) -> None:
    a = servers.a
    headers = {**auth(), "Content-Type": "application/json"}
    at = httpx.post(f"{a.url}/v1/jobs/?job_type=sleepy", content=_padded({"seconds": 0, "tag": "limit"}, LIMIT),
                    headers=headers, timeout=30)
    assert at.status_code == 202, at.text
    over = httpx.post(f"{a.url}/v1/jobs/?job_type=sleepy", content=_padded({"seconds": 0}, LIMIT + 1),
                      headers=headers, timeout=30)
    assert over.status_code == 413
    assert over.json() == {"detail": f"Request body over the limit of {LIMIT} bytes (MAX_JSON_BYTES)"}

    # Without Content-Length (chunked): counted as it arrives.
    def chunks(total: int) -> Iterator[bytes]:
        body = _padded({"seconds": 0}, total)
        for i in range(0, total, 64 * 1024):
            yield body[i:i + 64 * 1024]

    chunked = httpx.post(f"{a.url}/jobs/?job_type=sleepy", content=chunks(LIMIT + 1), headers=headers, timeout=30)
    assert chunked.status_code == 413 and set(chunked.json()) == {"detail"}
    cv = httpx.post(f"{a.url}/v1/clip-versions/", content=_padded({"project_id": "p"}, LIMIT + 1),
                    headers=headers, timeout=30)
    assert cv.status_code == 413
    # The upload route is the one that takes large bodies, under MAX_UPLOAD_BYTES.
    big = upload(a, b"\x00" * (3 * LIMIT))
    assert big.status_code == 201, big.text
    assert big.json()["size"] == 3 * LIMIT


def test_payload_strings_lists_and_nesting_are_bounded(servers: Servers) -> None:
    a = servers.a
    assert post_job(a, "sleepy", {"seconds": 0, "note": "x" * 10_000}).status_code == 202
    long = post_job(a, "sleepy", {"seconds": 0, "note": "x" * 10_001})
    assert long.status_code == 422
    assert long.json()["detail"][0]["loc"] == ["body", "note"]
    assert "at most 10000 characters" in long.json()["detail"][0]["msg"]
    many = post_job(a, "sleepy", {"seconds": 0, "items": list(range(10_001))})
    assert many.status_code == 422 and many.json()["detail"][0]["loc"] == ["body", "items"]
    nested: Any = 0
    for _ in range(40):
        nested = [nested]
    deep = post_job(a, "sleepy", {"seconds": 0, "deep": nested})
    assert deep.status_code == 422 and "Nested too deep" in deep.json()["detail"][0]["msg"]
    # A graph's own declaration still rules where it has one (ingest: renditions max_items 6).
    declared = post_job(a, "ingest", {"project_id": "p", "source_uri": "x.mp4", "renditions": [240] * 7})
    assert declared.status_code == 422
    assert ["body", "renditions"] in [e["loc"] for e in declared.json()["detail"]]


# -- 2. auth -----------------------------------------------------------------------------------------


def _routes(job_id: str, asset_id: str, cv_id: str) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, path, request kwargs, status with the right token) of every route family."""
    json_body = {"headers": {"Content-Type": "application/json"}}
    return [
        ("GET", "/jobs/", {}, 200),
        ("POST", "/jobs/?job_type=sleepy", {"content": b'{"seconds": 0}', **json_body}, 202),
        ("GET", f"/jobs/{job_id}", {}, 200),
        ("POST", "/jobs/job_nope/cancel", {}, 404),
        ("GET", f"/jobs/{job_id}/webhooks", {}, 200),
        ("POST", f"/jobs/{job_id}/webhooks/replay", {}, 409),
        ("GET", f"/jobs/{job_id}/events", {}, 200),
        ("GET", "/graphs/", {}, 200),
        ("GET", "/graphs/sleepy", {}, 200),
        ("GET", "/assets/?project_id=proj_a", {}, 200),
        ("POST", "/assets/?project_id=proj_a", {"content": b"bytes"}, 201),
        ("GET", f"/assets/{asset_id}", {}, 200),
        ("GET", f"/assets/{asset_id}/content", {}, 200),
        ("HEAD", f"/assets/{asset_id}/content", {}, 200),
        ("GET", "/clip-versions/", {}, 200),
        ("POST", "/clip-versions/", {"content": b'{"project_id": "proj_a", "timeline": {}}', **json_body}, 422),
        ("GET", f"/clip-versions/{cv_id}", {}, 200),
        ("GET", "/metrics", {}, 200),
        ("GET", "/schema/openapi.json", {}, 200),
    ]


@pytest.fixture(scope="module")
def resources(servers: Servers) -> dict[str, str]:
    a = servers.a
    job = post_job(a, "sleepy", {"seconds": 0, "tag": "resources"}).json()
    wait_done(a, job["id"])
    asset = upload(a, b"\x00\x01\x02 resource").json()
    cv = httpx.post(f"{a.url}/v1/clip-versions/", headers=auth(), timeout=10, json={
        "project_id": "proj_a", "timeline": {"tracks": [{"type": "text", "clips": [{"text": "hi", "duration": 1}]}]}})
    assert cv.status_code == 201, cv.text
    return {"job": job["id"], "asset": asset["id"], "cv": cv.json()["id"]}


def _request(proc: Proc, method: str, path: str, kwargs: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {**kwargs.get("headers", {}), **auth(token)}
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        if path.endswith("/events"):
            with client.stream(method, path, headers=headers) as response:
                response.read() if response.status_code != 200 else None
                return response
        return client.request(method, path, headers=headers, content=kwargs.get("content"))


def test_tokens_missing_wrong_and_right_on_every_route_family(servers: Servers, resources: dict[str, str]) -> None:
    a = servers.a
    routes = _routes(resources["job"], resources["asset"], resources["cv"])
    for prefix in ("", "/v1"):
        for method, path, kwargs, ok in routes:
            if path.startswith("/schema"):
                if prefix:
                    continue
                where = path
            else:
                where = prefix + path
            for token, challenge in ((None, 'Bearer realm="ave"'), (WRONG, 'Bearer realm="ave", error="invalid_token"')):
                response = _request(a, method, where, kwargs, token)
                assert response.status_code == 401, (method, where, token, response.status_code)
                assert response.headers["www-authenticate"] == challenge
                if method != "HEAD":
                    assert set(response.json()) == {"detail"}
            for token in (TOKEN_A, TOKEN_B):
                response = _request(a, method, where, kwargs, token)
                assert response.status_code == ok, (method, where, response.status_code, response.text[:300])
    # A scheme other than Bearer, or a token with a different case, is no token.
    for value in (f"Basic {TOKEN_A}", f"Bearer {TOKEN_A.upper()}", f"Bearer {TOKEN_A}x", "Bearer"):
        response = httpx.get(f"{a.url}/v1/jobs/", headers={"Authorization": value}, timeout=10)
        assert response.status_code == 401, value
    # The probes stay open.
    for path in ("/health/", "/v1/health/", "/health/diagnostics", "/v1/health/diagnostics"):
        assert httpx.get(f"{a.url}{path}", timeout=10).status_code == 200


def test_tokens_file_metrics_public_and_open_server(servers: Servers) -> None:
    b, c = servers.b, servers.c
    assert httpx.get(f"{b.url}/v1/jobs/", timeout=10).status_code == 401
    assert httpx.get(f"{b.url}/v1/jobs/", headers=auth(TOKEN_A), timeout=10).status_code == 401  # a's, not b's
    assert httpx.get(f"{b.url}/v1/jobs/", headers=auth(TOKEN_FILE), timeout=10).status_code == 200
    assert httpx.get(f"{b.url}/metrics", timeout=10).status_code == 200  # METRICS_PUBLIC=true
    assert httpx.get(f"{servers.a.url}/metrics", timeout=10).status_code == 401
    # No tokens: open, as before, with a warning at start-up in production.
    assert httpx.get(f"{c.url}/jobs/", timeout=10).status_code == 200
    assert post_job(c, "sleepy", {"seconds": 0}, token=None, prefix="").status_code == 202
    assert "the API is open to anyone" in c.tail(400)
    assert "the API is open to anyone" not in b.tail(400)
    schema = httpx.get(f"{c.url}/schema/openapi.json", timeout=10).json()
    assert "security" not in schema and "401" not in schema["paths"]["/v1/jobs"]["get"]["responses"]
    schema = httpx.get(f"{b.url}/schema/openapi.json", headers=auth(TOKEN_FILE), timeout=10).json()
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/v1/health"]["get"]["security"] == []
    assert schema["paths"]["/v1/metrics"]["get"]["security"] == []
    assert "401" in schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]


def test_websocket_needs_a_token_too(servers: Servers, resources: dict[str, str]) -> None:
    import websockets

    a = servers.a

    async def connect(path: str, token: str | None) -> Any:
        headers = auth(token) or None
        async with websockets.connect(f"{a.ws_url}{path}", additional_headers=headers, open_timeout=10) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    for path in (f"/ws/jobs/{resources['job']}", f"/v1/ws/jobs/{resources['job']}"):
        for token in (None, WRONG):
            with pytest.raises(websockets.InvalidStatus) as refused:
                asyncio.run(connect(path, token))
            assert refused.value.response.status_code == 401
            assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")
        record = asyncio.run(connect(path, TOKEN_A))
        assert record["id"] == resources["job"] and record["status"] == "completed"


def test_tokens_are_never_logged(servers: Servers, resources: dict[str, str]) -> None:
    # Runs after the requests above (with ACCESS_LOG=true and LOG_LEVEL=debug).
    for proc in (servers.a, servers.b):
        text = proc.log_path.read_text(errors="replace")
        assert '"GET /v1/jobs' in text, "the access log is on"
        for secret in (TOKEN_A, TOKEN_B, TOKEN_FILE, WRONG):
            assert secret not in text
    assert "API auth on: 2 bearer token(s)" in servers.a.log_path.read_text()


# -- 3. ownership ------------------------------------------------------------------------------------


def test_assets_of_another_project_are_refused(servers: Servers, resources: dict[str, str]) -> None:
    a = servers.a
    theirs = resources["asset"]  # uploaded to proj_a
    for job_type in ("ingest", "transcribe"):
        response = post_job(a, job_type, {"project_id": "proj_b", "source_asset_id": theirs})
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == [{"loc": ["body", "source_asset_id"], "type": "value_error",
                                              "msg": f"Asset {theirs} not found in project proj_b"}]
    timeline = {"tracks": [{"type": "video", "clips": [{"asset": theirs}]}]}
    cv = httpx.post(f"{a.url}/v1/clip-versions/", json={"project_id": "proj_b", "timeline": timeline},
                    headers=auth(), timeout=10)
    assert cv.status_code == 422 and "not found in project proj_b" in cv.json()["detail"][0]["msg"]
    render = post_job(a, "render", {"project_id": "proj_b", "timeline": timeline})
    assert render.status_code == 422 and "not found in project proj_b" in render.json()["detail"][0]["msg"]
    # In its own project it is found: the job is accepted (202, the queued record), and it fails for what the
    # asset is (not media), not for where it is.
    own = post_job(a, "ingest", {"project_id": "proj_a", "source_asset_id": theirs})
    assert own.status_code == 202, own.text
    record = own.json()
    assert record["id"].startswith("job_") and record["created_at"] == record["updated_at"]
    assert {k: v for k, v in record.items() if k not in ("id", "created_at", "updated_at")} == {
        "clip_version_id": None, "job_type": "ingest", "status": "queued", "queue_name": "ai-video-editor-jobs",
        "priority": 0, "payload": {"project_id": "proj_a", "source_asset_id": theirs}, "result_payload": None,
        "error_message": None, "started_at": None, "completed_at": None}
    done = wait_done(a, record["id"])
    assert done["status"] == "failed", done
    assert done["error_message"].startswith("The source file could not be read as media"), done
    assert done["error_message"].endswith("(step 'probe')"), done


def test_transcribe_models_are_bundled_names_or_folders_of_models_dir(servers: Servers, tmp_path: Path) -> None:
    a = servers.a
    elsewhere = tmp_path / "model_elsewhere"
    elsewhere.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (elsewhere / name).write_text("{}")
    (servers.models / "escape").symlink_to(elsewhere)
    asset = upload(a, b"RIFF not really a wav", project_id="proj_m").json()["id"]
    answers = []
    import os

    outside = os.path.relpath(elsewhere, servers.models)  # ../../…/model_elsewhere: a model, but outside
    for model in (str(elsewhere), str(tmp_path), "/etc", "/nonexistent/folder", outside, "escape",
                  "my-whisper/..", "", "large-v3"):
        response = post_job(a, "transcribe", {"project_id": "proj_m", "source_asset_id": asset, "model": model})
        assert response.status_code == 422, (model, response.text)
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", "model"]
        answers.append(error["msg"].replace(f"'{model}'", "'<model>'"))
        for leak in (str(tmp_path), str(servers.models), "model.bin", "exist", "folder is not"):
            assert leak not in answers[-1], (model, answers[-1])
    assert len(set(answers)) == 1, "every refusal reads the same"
    for model in ("my-whisper", str(servers.models / "my-whisper"), "tiny.en"):
        response = post_job(a, "transcribe", {"project_id": "proj_m", "source_asset_id": asset, "model": model})
        assert response.status_code == 202, (model, response.text)
        httpx.post(f"{a.url}/v1/jobs/{response.json()['id']}/cancel", headers=auth(), timeout=10)


# -- 4. idempotency ----------------------------------------------------------------------------------


def _jobs_tagged(proc: Proc, tag: str, token: str = TOKEN_A) -> list[dict[str, Any]]:
    listed = httpx.get(f"{proc.url}/v1/jobs/?job_type=sleepy&limit=500", headers=auth(token), timeout=10).json()
    return [j for j in listed if j["payload"].get("tag") == tag]


def test_idempotency_key_on_jobs(servers: Servers) -> None:
    a = servers.a
    key = {"Idempotency-Key": "retry-me-1"}
    first = post_job(a, "sleepy", {"seconds": 0, "tag": "idem-1"}, headers=key, params={"priority": 3})
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    wait_done(a, first.json()["id"])
    again = post_job(a, "sleepy", {"tag": "idem-1", "seconds": 0}, headers=key, params={"priority": 3})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json(), "the original record, as it was first answered"
    assert again.json()["status"] == "queued"
    assert len(_jobs_tagged(a, "idem-1")) == 1
    # The same key over the other prefix, and from another API server on the same Redis: the same job.
    assert post_job(a, "sleepy", {"tag": "idem-1", "seconds": 0}, headers=key, params={"priority": 3},
                    prefix="").json()["id"] == first.json()["id"]

    for changed in ({"json": {"seconds": 0, "tag": "idem-other"}}, {"params": {"priority": 4}}):
        response = post_job(a, "sleepy", changed.get("json", {"seconds": 0, "tag": "idem-1"}), headers=key,
                            params=changed.get("params", {"priority": 3}))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        assert "different request" in response.json()["detail"][0]["msg"]
    # Scoped per token: the other token's key of the same name is another key.
    other = post_job(a, "sleepy", {"seconds": 0, "tag": "idem-1"}, token=TOKEN_B, headers=key,
                     params={"priority": 3})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    # A refused request does not keep the key: once corrected, the same key creates the job.
    bad = post_job(a, "sleepy", {"seconds": "soon", "tag": "idem-2"}, headers={"Idempotency-Key": "fix-me"})
    assert bad.status_code == 422
    good = post_job(a, "sleepy", {"seconds": 0, "tag": "idem-2"}, headers={"Idempotency-Key": "fix-me"})
    assert good.status_code == 202
    for value in ("", "x" * 256, "with space"):
        response = post_job(a, "sleepy", {"seconds": 0}, headers={"Idempotency-Key": value})
        assert response.status_code == 422, value
        assert response.json()["detail"][0]["loc"][0] == "header"


def test_ten_concurrent_requests_with_one_key_create_one_job(servers: Servers) -> None:
    a = servers.a

    def send(i: int) -> httpx.Response:  # half of them without the /v1 prefix: the same key
        return post_job(a, "sleepy", {"seconds": 0, "tag": "idem-race"}, prefix="/v1" if i % 2 else "",
                        headers={"Idempotency-Key": "race-key"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(10)))
    assert [r.status_code for r in answers] == [202] * 10, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(1 for r in answers if "idempotent-replayed" not in r.headers) == 1
    assert len(_jobs_tagged(a, "idem-race")) == 1


def test_idempotency_key_on_uploads(servers: Servers) -> None:
    a = servers.a
    data = b"the same bytes" * 1000
    first = upload(a, data, **{"Idempotency-Key": "upload-1"})
    assert first.status_code == 201
    again = upload(a, data, **{"Idempotency-Key": "upload-1"})
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = httpx.get(f"{a.url}/v1/assets/?project_id=proj_a&limit=500", headers=auth(), timeout=10).json()
    assert sum(1 for x in listed if x["sha256"] == first.json()["sha256"]) == 1
    other = upload(a, data + b"!", **{"Idempotency-Key": "upload-1"})
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    # The discarded copies leave nothing in storage.
    folder = servers.tmp / "data" / "media" / "uploads" / "proj_a"
    assert sum(1 for p in folder.rglob("*") if p.is_file() and p.read_bytes() == data) == 1

    def send(_: int) -> httpx.Response:
        return upload(a, b"raced upload", **{"Idempotency-Key": "upload-race"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(10)))
    assert [r.status_code for r in answers] == [201] * 10
    assert len({r.json()["id"] for r in answers}) == 1


# -- 5. /v1/ -----------------------------------------------------------------------------------------


def test_every_route_answers_the_same_under_v1(servers: Servers, resources: dict[str, str]) -> None:
    a = servers.a
    job, asset, cv = resources["job"], resources["asset"], resources["cv"]
    gets = ["/health/", "/health/diagnostics", f"/jobs/{job}", "/jobs/?job_type=sleepy&limit=3", "/jobs/job_nope",
            f"/jobs/{job}/webhooks", "/graphs/", "/graphs/sleepy", "/graphs/nope", f"/assets/{asset}",
            "/assets/?project_id=proj_a", "/assets/asset_nope", f"/clip-versions/{cv}", "/clip-versions/?limit=5",
            "/jobs/?status=bogus"]
    with httpx.Client(base_url=a.url, headers=auth(), timeout=10) as client:
        for path in gets:
            old, new = client.get(path), client.get(f"/v1{path}")
            assert (old.status_code, old.headers["content-type"]) == (new.status_code, new.headers["content-type"])
            if "diagnostics" not in path:
                assert old.json() == new.json(), path
        old, new = client.get(f"/assets/{asset}/content"), client.get(f"/v1/assets/{asset}/content")
        assert old.status_code == new.status_code == 200 and old.content == new.content
        ranged = client.get(f"/v1/assets/{asset}/content", headers={"Range": "bytes=0-2"})
        assert ranged.status_code == 206 and ranged.content == b"\x00\x01\x02"
        assert client.post("/v1/jobs/job_nope/cancel").json() == client.post("/jobs/job_nope/cancel").json()
        for path in (f"/jobs/{job}/events", f"/v1/jobs/{job}/events"):
            with client.stream("GET", path) as stream:
                assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
                body = stream.read().decode()
            assert f'"id":"{job}"' in body and "id: " in body
        for prefix in ("", "/v1"):
            assert client.get(f"{prefix}/metrics").text.startswith("# HELP")
            made = client.post(f"{prefix}/jobs/?job_type=sleepy", json={"seconds": 0})
            assert made.status_code == 202
            allowed = client.options(f"{prefix}/jobs/").headers["allow"]
            assert allowed == "GET, OPTIONS, POST"
            assert client.options(f"{prefix}/assets").headers["allow"] == "GET, OPTIONS, POST"
            assert client.options(f"{prefix}/assets/{asset}/content").headers["allow"] == "GET, HEAD, OPTIONS"
        assert client.patch("/v1/jobs/").status_code == 405


# -- 6. metrics --------------------------------------------------------------------------------------


def _metrics(proc: Proc) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{proc.url}/metrics", timeout=10).text
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_when_jobs_run(servers: Servers) -> None:
    a, b = servers.a, servers.b  # a runs the jobs; b (another process, no dispatcher) serves the metrics
    # Job types no other test submits (metered: sleepy by another name; broken; retrying), so the counts
    # move by this test's jobs alone, whatever other tests left running.
    before = _metrics(b)
    done = [post_job(a, "metered", {"seconds": 0.05, "tag": "metrics"}).json()["id"] for _ in range(3)]
    failed = post_job(a, "broken", {}).json()["id"]
    retried = post_job(a, "retrying", {}).json()["id"]
    long = post_job(a, "metered", {"seconds": 30, "tag": "metrics-cancel"}).json()["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{a.url}/v1/jobs/{long}", headers=auth(), timeout=10).json()["status"] != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    during = _metrics(b)
    assert _value(during, "ave_jobs_running") >= 1
    assert ("ave_queue_depth", ()) in during
    assert httpx.post(f"{a.url}/v1/jobs/{long}/cancel", headers=auth(), timeout=10).status_code == 200
    for job_id in [*done, failed, retried]:
        wait_done(a, job_id)
    assert wait_done(a, retried)["status"] == "failed"
    after = _metrics(b)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("ave_jobs_submitted_total", job_type="metered") == 4
    assert moved("ave_jobs_submitted_total", job_type="broken") == 1
    assert moved("ave_jobs_completed_total", job_type="metered") == 3
    assert moved("ave_jobs_failed_total", job_type="broken") == 1
    assert moved("ave_jobs_failed_total", job_type="retrying") == 1
    assert moved("ave_jobs_cancelled_total", job_type="metered") == 1
    assert moved("ave_task_retries_total", job_type="retrying") == 2
    assert moved("ave_task_retries_total", job_type="metered") == 0
    assert moved("ave_job_duration_seconds_count", job_type="metered", status="completed") == 3
    assert moved("ave_job_duration_seconds_bucket", job_type="metered", status="completed", le="+Inf") == 3
    assert moved("ave_job_duration_seconds_bucket", job_type="metered", status="completed", le="0.05") == 0
    assert moved("ave_job_duration_seconds_sum", job_type="metered", status="completed") >= 0.15
    assert moved("ave_job_duration_seconds_count", job_type="metered", status="cancelled") == 1
    assert _value(after, "ave_redis_up") == 1.0
    assert ("ave_redis_errors_total", ()) in after
    # The same counts from any API server.
    from_a = httpx.get(f"{a.url}/metrics", headers=auth(), timeout=10).text
    assert f'ave_jobs_failed_total{{job_type="retrying"}} {_value(after, "ave_jobs_failed_total", job_type="retrying")}' \
        in from_a
