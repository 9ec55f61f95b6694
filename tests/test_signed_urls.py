"""Signed URLs (issue 21): with API tokens on, a browser's ``<video>``, hls.js, ``EventSource`` and
``WebSocket`` reach media and live updates through a grant in the path, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app
from server.controllers.content import package_file
from server.signing import GrantError, UrlSigner
from tests.conftest import wait_for

TOKEN = {"Authorization": "Bearer t0k"}


def test_a_grant_opens_only_its_resource_until_it_expires() -> None:
    signer = UrlSigner(None, ["t0k", "other"])
    grant = signer.grant("a", "asset_1", 2_000)
    assert signer.check(grant, "a", "asset_1", now=1_999).resource_id == "asset_1"
    assert UrlSigner(None, ["other", "t0k"]).check(grant, "a", "asset_1", now=0)  # every server with the tokens
    refusals = [
        (signer, grant, "a", "asset_2", 0, "does not open asset asset_2"),
        (signer, grant, "j", "asset_1", 0, "does not open job asset_1"),
        (signer, grant.replace("2000-", "2999-"), "a", "asset_1", 0, "does not open"),  # a later expiry, forged
        (signer, grant[:-2] + ("AA" if not grant.endswith("AA") else "BB"), "a", "asset_1", 0, "does not open"),
        (UrlSigner(None, ["t0k"]), grant, "a", "asset_1", 0, "signing key changed"),  # tokens changed: revoked
        (UrlSigner("s3cret", ["t0k", "other"]), grant, "a", "asset_1", 0, "does not open"),
        (signer, grant, "a", "asset_1", 2_000, "expired at 1970-01-01T00:33:20Z"),
        (signer, "nonsense", "a", "asset_1", 0, "Not a signed URL"),
    ]
    for who, presented, kind, resource, now, why in refusals:
        with pytest.raises(GrantError, match=why):
            who.check(presented, kind, resource, now=now)  # type: ignore[arg-type]


def test_package_files_are_only_those_the_export_listed() -> None:
    master = {"kind": "hls", "path": "outputs/p/job/export/hls/master.m3u8",
              "meta": {"files": ["720p/index.m3u8", "720p/seg_00001.m4s", "audio/init.mp4"]}}
    assert package_file(master, "720p/index.m3u8") == ("outputs/p/job/export/hls/720p/index.m3u8",
                                                       "application/vnd.apple.mpegurl")
    assert package_file(master, "720p/seg_00001.m4s") == ("outputs/p/job/export/hls/720p/seg_00001.m4s",
                                                          "video/iso.segment")
    for uri in ("../../../secret.mp4", "720p/../../x.m3u8", "master.m3u8", "720p/seg_00002.m4s"):
        assert package_file(master, uri) is None, uri
    assert package_file({**master, "kind": "video"}, "720p/index.m3u8") is None  # only HLS masters have files


def _sign(client: TestClient[Any], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/signed-urls", json=body, headers=TOKEN)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_signed_urls_reach_media_and_live_updates_without_a_token(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_tokens": "t0k"})
    with TestClient(app=create_app(secured), timeout=30) as client:
        data = bytes(range(256)) * 40
        upload = client.post("/v1/assets/?project_id=p&filename=a.bin", content=data, headers=TOKEN).json()
        other = client.post("/v1/assets/?project_id=p&filename=b.bin", content=b"x" * 10, headers=TOKEN).json()
        assert client.get(f"/v1/assets/{upload['id']}/content").status_code == 401
        assert client.post("/v1/signed-urls", json={"asset_id": upload["id"]}).status_code == 401

        signed = _sign(client, {"asset_id": upload["id"], "expires_in": 600})
        assert signed["url"].startswith("/v1/signed/") and signed["expires_at"].endswith("+00:00")
        whole = client.get(signed["url"])  # no Authorization header, as a <video> sends none
        assert whole.status_code == 200 and whole.content == data
        part = client.get(signed["url"], headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert client.head(signed["url"]).headers["content-length"] == str(len(data))

        moved = client.get(signed["url"].replace(upload["id"], other["id"]))  # the grant on another asset
        assert moved.status_code == 403 and "does not open asset" in moved.json()["detail"]
        assert client.get(signed["url"].replace("/content", "")).status_code in (403, 404, 405)
        signer = UrlSigner(None, ["t0k"])
        stale = f"/v1/signed/{signer.grant('a', upload['id'], 1_000)}/assets/{upload['id']}/content"
        assert "expired" in client.get(stale).json()["detail"]
        listing = client.get(signed["url"].split("/assets/")[0] + "/assets/")  # a listing is not a signed route
        assert listing.status_code == 404

        too_long = client.post("/v1/signed-urls", json={"asset_id": upload["id"], "expires_in": 10**8}, headers=TOKEN)
        assert too_long.status_code == 422 and "expires_in" in too_long.text
        both = client.post("/v1/signed-urls", json={"asset_id": "a", "job_id": "j"}, headers=TOKEN)
        assert both.status_code == 422
        missing = client.post("/v1/signed-urls", json={"job_id": "job_nope"}, headers=TOKEN)
        assert missing.status_code == 404 and missing.json() == {"detail": "Job job_nope not found"}

        job = client.post("/v1/jobs/?job_type=sleepy", json={"seconds": 0.1}, headers=TOKEN).json()
        live = _sign(client, {"job_id": job["id"]})
        with client.websocket_connect(live["ws_url"]) as socket:
            first = json.loads(socket.receive_text())
            assert first["id"] == job["id"]
        done = wait_for(_Authed(client), job["id"])
        events = client.get(live["events_url"])
        assert events.status_code == 200 and f'"id":"{job["id"]}"' in events.text and done["status"] in events.text
        assert client.get(live["events_url"].replace(job["id"], "job_other")).status_code == 403


class _Authed:
    """The client with the token on every GET (for :func:`wait_for`)."""

    def __init__(self, client: TestClient[Any]) -> None:
        self.client = client

    def get(self, url: str) -> Any:
        return self.client.get(url, headers=TOKEN)
