"""The Assets API: streamed uploads, metadata, Range downloads, limits, and use by a job."""

from __future__ import annotations

import hashlib
import os
import re
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app
from server.controllers.assets import safe_filename
from server.downloads import ByteRange, RangeNotSatisfiableError, parse_range
from tests.conftest import wait_for
from tests.mediagen import make_clip

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
UPLOAD_KEYS = {"id", "project_id", "filename", "content_type", "size", "sha256", "created_at", "kind"}
DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


def _upload(client: TestClient[Any], data: bytes = DATA, **params: str) -> dict[str, Any]:
    params.setdefault("project_id", "proj_1")
    response = client.post("/assets/", params=params, content=data)
    assert response.status_code == 201, response.text
    return response.json()


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_raw_upload_metadata_and_content(client: TestClient[Any], media_root: Path) -> None:
    response = client.post("/assets/?project_id=proj_1&filename=clip.mp4", content=DATA)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == UPLOAD_KEYS
    assert re.match(r"^asset_[0-9a-f]+$", body["id"])
    assert body["project_id"] == "proj_1" and body["filename"] == "clip.mp4" and body["kind"] == "source"
    assert body["content_type"] == "video/mp4"  # guessed from the name: httpx sends no Content-Type
    assert body["size"] == len(DATA) and body["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert TS.match(body["created_at"])

    stored = media_root / "uploads" / "proj_1" / body["id"] / "clip.mp4"
    assert stored.read_bytes() == DATA
    assert [p.name for p in _files_under(media_root / "uploads")] == ["clip.mp4"]  # no temp files left

    meta = client.get(f"/assets/{body['id']}")
    assert meta.status_code == 200
    shown = meta.json()
    assert "path" not in shown and shown["url"] == f"/assets/{body['id']}/content"
    assert {k: shown[k] for k in UPLOAD_KEYS} == body

    content = client.get(shown["url"])
    assert content.status_code == 200
    assert content.content == DATA
    assert content.headers["accept-ranges"] == "bytes"
    assert content.headers["content-length"] == str(len(DATA))
    assert content.headers["content-type"].startswith("video/mp4")
    assert content.headers["content-disposition"] == 'inline; filename="clip.mp4"'
    assert content.headers["etag"] == f'"{body["sha256"]}"'

    head = client.head(shown["url"])
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(DATA))


def test_content_type_header_filename_sanitised_and_listing(client: TestClient[Any], media_root: Path) -> None:
    first = client.post("/assets/?project_id=proj_2&filename=../../etc/évil..name.wav", content=b"RIFF....",
                        headers={"Content-Type": "audio/x-wav; codec=1"}).json()
    assert first["filename"] == "évil.name.wav" and first["content_type"] == "audio/x-wav"
    assert (media_root / "uploads" / "proj_2" / first["id"] / "évil.name.wav").is_file()
    disposition = client.get(f"/assets/{first['id']}/content").headers["content-disposition"]
    assert disposition == "inline; filename=\"evil.name.wav\"; filename*=UTF-8''%C3%A9vil.name.wav"

    second = _upload(client, b"no name", project_id="proj_2")
    assert second["filename"] == "upload.bin" and second["content_type"] == "application/octet-stream"
    _upload(client, b"elsewhere", project_id="proj_3")

    listed = client.get("/assets/?project_id=proj_2")
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()] == [second["id"], first["id"]]
    assert all("path" not in a and a["url"].endswith("/content") for a in listed.json())
    assert client.get("/assets/?project_id=nobody").json() == []


def test_multipart_upload_streams_the_file_part(client: TestClient[Any], media_root: Path) -> None:
    response = client.post("/assets/?project_id=proj_m", data={"note": "ignored"},
                           files={"file": ("take 1.mov", DATA, "video/quicktime")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "take 1.mov" and body["content_type"] == "video/quicktime"
    assert body["size"] == len(DATA) and body["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert (media_root / "uploads" / "proj_m" / body["id"] / "take 1.mov").read_bytes() == DATA

    renamed = client.post("/assets/?project_id=proj_m&filename=renamed.mp4",
                          files={"file": ("orig.bin", b"abc", "application/octet-stream")}).json()
    assert renamed["filename"] == "renamed.mp4" and renamed["content_type"] == "video/mp4"

    missing = client.post("/assets/?project_id=proj_m", files={"other": ("a.mp4", b"abc", "video/mp4")})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "file"]

    broken = client.post("/assets/?project_id=proj_m", content=b"--xyz\r\nContent-Disposition: form-data; name=",
                         headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert broken.status_code == 400 and broken.json()["detail"].startswith("Malformed multipart body")
    assert sorted(p.name for p in _files_under(media_root / "uploads")) == ["renamed.mp4", "take 1.mov"]


def test_range_requests(client: TestClient[Any]) -> None:
    url = f"/assets/{_upload(client)['id']}/content"
    total = len(DATA)

    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{total}"
    assert part.headers["content-length"] == "100"
    assert part.headers["accept-ranges"] == "bytes"

    suffix = client.get(url, headers={"Range": "bytes=-500"})
    assert suffix.status_code == 206 and suffix.content == DATA[-500:]
    assert suffix.headers["content-range"] == f"bytes {total - 500}-{total - 1}/{total}"

    open_ended = client.get(url, headers={"Range": "bytes=10000-"})
    assert open_ended.status_code == 206 and open_ended.content == DATA[10000:]
    assert open_ended.headers["content-range"] == f"bytes 10000-{total - 1}/{total}"

    clipped = client.get(url, headers={"Range": "bytes=10200-99999"})
    assert clipped.status_code == 206 and clipped.content == DATA[10200:]

    for bad in ("bytes=10240-", "bytes=99999-100000", "bytes=-0"):
        refused = client.get(url, headers={"Range": bad})
        assert refused.status_code == 416, bad
        assert refused.headers["content-range"] == f"bytes */{total}"
        assert set(refused.json()) == {"detail"}

    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == DATA


def test_parse_range_rules() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == ByteRange(0, 0)
    assert parse_range("bytes=-20", 10) == ByteRange(0, 9)
    assert parse_range("bytes=5-2", 10) is None  # invalid: ignored
    assert parse_range("bytes=0-1,4-5", 10) is None  # several ranges: whole file
    assert parse_range("items=0-1", 10) is None
    with pytest.raises(RangeNotSatisfiableError):
        parse_range("bytes=0-", 0)
    assert safe_filename("..") == "upload.bin" and safe_filename("a/b\\..\\c.mp4") == "c.mp4"
    assert safe_filename(".hidden") == "hidden" and "/" not in safe_filename("x" * 300 + ".mp4")
    assert safe_filename("x" * 300 + ".mp4").endswith(".mp4") and len(safe_filename("x" * 300 + ".mp4")) <= 200


def test_upload_errors(client: TestClient[Any], media_root: Path) -> None:
    missing = client.post("/assets/", content=b"abc")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "project_id"]

    for bad in ("a/b", "..", " "):
        response = client.post("/assets/", params={"project_id": bad}, content=b"abc")
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["query", "project_id"]

    empty = client.post("/assets/?project_id=p", content=b"")
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body"]

    unknown = client.get("/assets/asset_nope")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Asset asset_nope not found"}
    assert client.get("/assets/asset_nope/content").status_code == 404
    assert _files_under(media_root / "uploads") == []


def test_upload_limit_413(settings: Settings, media_root: Path) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000, "run_dispatcher": False})
    with TestClient(app=create_app(small), timeout=30) as client:
        ok = client.post("/assets/?project_id=p", content=b"x" * 1000)
        assert ok.status_code == 201 and ok.json()["size"] == 1000

        declared = client.post("/assets/?project_id=p", content=b"x" * 1001)  # refused on Content-Length
        assert declared.status_code == 413
        assert set(declared.json()) == {"detail"} and "1000" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b"y" * 600
            yield b"y" * 600

        streamed = client.post("/assets/?project_id=p", content=chunks())
        assert streamed.status_code == 413

        multipart = client.post("/assets/?project_id=p", files={"file": ("big.mp4", b"z" * 1001, "video/mp4")})
        assert multipart.status_code == 413

    kept = _files_under(media_root / "uploads")
    assert len(kept) == 1 and kept[0].stat().st_size == 1000  # the refused uploads left nothing


@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_large_upload_streams_in_bounded_memory(client: TestClient[Any], media_root: Path, multipart: bool) -> None:
    """64 MiB through the app's own event loop, fed in 256 KiB chunks: memory stays near a block."""
    size, piece = 64 * 1024 * 1024, 256 * 1024
    chunk = os.urandom(piece)
    expected = hashlib.sha256()
    for _ in range(size // piece):
        expected.update(chunk)
    boundary = "----upload-boundary-7MA4YWxkTrZu0gW"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        if multipart:
            yield head
        for _ in range(size // piece):
            yield chunk
        if multipart:
            yield tail

    content_type = f"multipart/form-data; boundary={boundary}" if multipart else "application/octet-stream"

    async def send() -> httpx.Response:
        # Litestar's TestClient reads the whole request body before calling the app, so
        # stream through httpx's ASGITransport instead, in the loop the app runs in.
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.post("/assets/?project_id=big&filename=big.bin", content=body(),
                                   headers={"Content-Type": content_type})

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        response = client.blocking_portal.call(send)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.text
    body_json = response.json()
    assert body_json["size"] == size and body_json["sha256"] == expected.hexdigest()
    assert (media_root / "uploads" / "big" / body_json["id"] / "big.bin").stat().st_size == size
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes for a {size}-byte upload"


def test_redis_down_gives_503_and_keeps_nothing(settings: Settings, media_root: Path) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "run_dispatcher": False})
    with TestClient(app=create_app(down), timeout=30) as client:
        response = client.post("/assets/?project_id=p&filename=a.mp4", content=DATA)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Queue connection error: ")
    assert _files_under(media_root / "uploads") == []


def test_ingest_job_uses_uploaded_asset(client: TestClient[Any], tmp_path: Path) -> None:
    clip = tmp_path / "upload.mp4"
    make_clip(clip, seconds=1.0, size=(160, 120), fps="30", audio=True, bframes=False)
    with clip.open("rb") as fh:
        uploaded = client.post("/assets/?project_id=proj_job", files={"file": ("clip.mp4", fh, "video/mp4")})
    assert uploaded.status_code == 201, uploaded.text
    asset = uploaded.json()
    assert asset["size"] == clip.stat().st_size

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "proj_job", "source_asset_id": asset["id"]})
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"], timeout=60)
    assert done["status"] == "completed", done["error_message"]
    info = done["result_payload"]["outputs"]["media_info"]
    assert info["video"]["width"] == 160 if "video" in info else any(s.get("width") == 160 for s in info["streams"])
