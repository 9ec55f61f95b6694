"""CORS: a page on another origin may call every route (preflights answered, headers exposed), tokens on too."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app

ORIGIN = "http://127.0.0.1:5173"
PREFLIGHT_HEADERS = "authorization, content-type, idempotency-key, range, last-event-id"


def _preflight(client: TestClient[Any], path: str, method: str) -> Any:
    return client.options(path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": PREFLIGHT_HEADERS})


def test_preflights_and_responses_carry_cors_headers_with_tokens_on(settings: Settings) -> None:
    cors = settings.model_copy(update={"cors_allow_origins": f"{ORIGIN}, https://app.example", "api_tokens": "t0k"})
    with TestClient(app=create_app(cors), timeout=30) as client:
        for path, method in [("/jobs/", "POST"), ("/v1/jobs/", "POST"), ("/jobs/job_x", "GET"),
                             ("/v1/assets/asset_x/content", "GET"), ("/health/", "GET"), ("/v1/jobs/job_x", "DELETE")]:
            response = _preflight(client, path, method)  # no token: a browser never sends one on a preflight
            assert 200 <= response.status_code < 300, (path, response.status_code, response.text)
            assert response.headers["access-control-allow-origin"] == ORIGIN, path
            assert method in response.headers["access-control-allow-methods"], path
            allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
            assert set(PREFLIGHT_HEADERS.split(", ")) <= allowed, (path, allowed)
        health = client.get("/health/", headers={"Origin": ORIGIN})
        assert health.status_code == 200 and health.headers["access-control-allow-origin"] == ORIGIN
        exposed = {h.strip().lower() for h in health.headers["access-control-expose-headers"].split(",")}
        assert {"content-range", "accept-ranges", "content-length", "etag", "link"} <= exposed
        jobs = client.get("/jobs/", headers={"Origin": ORIGIN, "Authorization": "Bearer t0k"})
        assert jobs.status_code == 200 and jobs.headers["access-control-allow-origin"] == ORIGIN
        refused = client.get("/jobs/", headers={"Origin": ORIGIN})
        assert refused.status_code == 401  # CORS opens the door to pages, not to callers without a token
        other = client.options("/jobs/", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_no_cors_headers_unless_asked(client: TestClient[Any]) -> None:
    response = client.get("/health/", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
