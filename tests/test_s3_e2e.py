"""``MEDIA_ROOT=s3://bucket/prefix`` end to end, against a real S3 server (moto's, in its own process).

Jobs go through the API with real Redis and real Dask workers; what the jobs wrote is read back
from the bucket with boto3 (not through the code under test) and decoded. The server's meter
counts the bytes of every object GET, so the tests see how often a source is really fetched.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from litestar.testing import TestClient

from operators.storage import Storage
from operators.storage_cache import MediaCache
from server.app import create_app
from scheduler.settings import Settings
from tests import speechgen as sg
from tests.conftest import wait_for, wait_until
from tests.s3server import S3Server

PREFIX = "media"
FAST = {"preset": "ultrafast", "crf": 30, "audio_bitrate": 64000, "renditions": [48]}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture()
def bucket(s3: S3Server) -> str:
    name = f"ave-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    s3.reset()
    return name


@pytest.fixture()
def settings(settings: Settings, s3: S3Server, bucket: str) -> Settings:
    """The conftest settings with the media root in the bucket (what MEDIA_ROOT / MEDIA_STORAGE_OPTIONS give)."""
    return settings.model_copy(update={"media_root": f"s3://{bucket}/{PREFIX}",
                                       "media_storage_options": s3.storage_options()})


def _keys(s3: S3Server, bucket: str, under: str) -> list[str]:
    """The keys of every object under ``PREFIX/under`` in the bucket, listed with boto3."""
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{under}").get("Contents", [])
    return [o["Key"] for o in listed]


def _objects(s3: S3Server, bucket: str, under: str) -> dict[str, bytes]:
    """Every object under ``PREFIX/under`` in the bucket, read with boto3."""
    client = s3.client()
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in _keys(s3, bucket, under)}


def _download(client: TestClient[Any], record: dict[str, Any]) -> bytes:
    response = client.get(f"/assets/{record['id']}/content")
    assert response.status_code == 200, response.text
    assert len(response.content) == record["size"] > 0
    return response.content


def _frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)
def test_ingest_and_transcribe_on_s3(client: TestClient[Any], s3: S3Server, bucket: str, tmp_path: Path) -> None:
    speech = sg.compose_sentences(list(sg.SENTENCES[10:13]), [2.0])
    source = sg.write_video(tmp_path / "talk.mp4", speech.duration, speech.audio)  # a keyframe every 1.2 s
    size = source.stat().st_size
    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/talk.mp4", Body=source.read_bytes())

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "proj_s3", "source_uri": "talk.mp4",
                                                             "transcript": True, "chunk_seconds": 2, **FAST})
    assert response.status_code == 202, response.text
    ingest = wait_for(client, response.json()["id"], timeout=120)
    assert ingest["status"] == "completed", ingest["error_message"]
    log = [e["message"] for e in ingest["result_payload"]["log"]]
    chunks = int(next(m for m in log if m.startswith("Split ")).split(" into ")[1].split()[0])
    assert chunks >= 4, log

    # The source was fetched once for the whole job (probe, split, every chunk, audio, poster):
    # through the machine's cache, shared by both workers, not once per task.
    read = s3.reads().get(f"/{bucket}/{PREFIX}/talk.mp4", 0)
    print(f"\nS3 bytes read of the source per ingest: {read} of {size} ({read / size:.2f}x, {chunks} chunks)")
    assert size <= read <= 1.2 * size, (read, size)

    # The transcoded chunks (intermediates) leave the bucket once the job ends; the outputs stay.
    wait_until(lambda: not _keys(s3, bucket, f"jobs/{ingest['id']}/chunks/"), 10, "the chunks to be deleted")
    # Every output is an object in the bucket, the same bytes the API serves.
    stored = _objects(s3, bucket, f"jobs/{ingest['id']}/")
    outputs = ingest["result_payload"]["outputs"]
    (proxy,) = outputs["proxy"]
    for record in (proxy, outputs["poster"], outputs["sprite"], outputs["audio"], outputs["waveform"]):
        assert _download(client, record) in stored.values(), record
    video = _download(client, proxy)
    assert _frames(video) == _frames(source.read_bytes()) == int(speech.duration * 10)
    part = client.get(f"/assets/{proxy['id']}/content", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.content == video[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{proxy['size']}"
    with av.open(io.BytesIO(_download(client, outputs["audio"]))) as wav:
        assert (wav.streams.audio[0].sample_rate, wav.streams.audio[0].channels) == (16000, 1)

    # The chained transcribe reads ingest's WAV from the bucket; its transcript lands there too.
    s3.reset()
    done = wait_for(client, ingest["result_payload"]["chained_jobs"]["transcribe"], timeout=120)
    assert done["status"] == "completed", done["error_message"]
    transcript = done["result_payload"]["outputs"]["transcript"]
    text = _download(client, transcript)
    assert text in _objects(s3, bucket, f"jobs/{done['id']}/").values()
    doc = json.loads(text)
    heard = " ".join(s["text"] for s in doc["segments"])
    assert sg.wer(speech.text, heard) <= 0.3, heard
    assert doc["duration"] == pytest.approx(speech.duration, abs=0.05)
    srt = _download(client, done["result_payload"]["outputs"]["srt"]).decode()
    assert re.search(r"00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}", srt), srt
    wav_key = f"/{bucket}/{PREFIX}/jobs/{ingest['id']}/audio/16k_mono.wav"
    print(f"S3 bytes read by transcribe: {s3.reads()}")
    assert s3.reads().get(wav_key, 0) <= outputs["audio"]["size"], s3.reads()


def test_an_upload_lands_in_the_bucket(client: TestClient[Any], s3: S3Server, bucket: str) -> None:
    body = bytes(range(256)) * 64
    response = client.post("/assets/?project_id=proj_s3&filename=blob.bin", content=body,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    asset = response.json()
    assert _objects(s3, bucket, f"uploads/proj_s3/{asset['id']}/") == {
        f"{PREFIX}/uploads/proj_s3/{asset['id']}/blob.bin": body}
    assert client.get(f"/assets/{asset['id']}/content").content == body
    part = client.get(f"/assets/{asset['id']}/content", headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == body[1000:]
    # Named by source_uri, the object is found by the submission's existence check (a HEAD, off the loop).
    missing = client.post("/jobs/?job_type=ingest", json={"project_id": "proj_s3", "source_uri": "nope.mp4"})
    assert missing.status_code == 422 and "nope.mp4" in missing.text


class HeldHeads:
    """A pass-through HTTP proxy in front of the S3 server that holds every HEAD of one key until released.

    The test learns when the request arrived (``arrived``) and decides when it is answered (``released``):
    a slow store whose slowness lasts exactly as long as the test needs, with no sleeps to guess it.
    """

    #: Headers that describe one hop's connection or encoding, not the message: not passed on.
    HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"})

    def __init__(self, upstream: str, key: str) -> None:
        self.arrived, self.released = threading.Event(), threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                if self.command == "HEAD" and self.path.split("?")[0].endswith(key):
                    proxy.arrived.set()
                    proxy.released.wait(60)
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HeldHeads.HOP}
                answer = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=30)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HeldHeads.HOP:
                        self.send_header(name, value)
                length = answer.headers.get("content-length", "0") if self.command == "HEAD" else len(answer.content)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_store_does_not_stall_the_api(settings: Settings, s3: S3Server) -> None:
    """A submission waiting on S3 (its source's existence check) leaves the event loop free: /health/
    answers while the store holds that request, for as long as the test lets it hold it."""
    store = HeldHeads(s3.url, "/slow.mp4")
    options = {**settings.media_storage_options, "endpoint_url": store.url}
    answers: dict[str, Any] = {}
    try:
        with TestClient(app=create_app(settings.model_copy(update={"media_storage_options": options})),
                        timeout=60) as client:
            submit = threading.Thread(target=lambda: answers.update(post=client.post(
                "/jobs/?job_type=ingest", json={"project_id": "proj_s3", "source_uri": "slow.mp4"})))
            submit.start()
            assert store.arrived.wait(30), "the submission never asked the store about its source"
            health = threading.Thread(target=lambda: answers.update(health=client.get("/health/")))
            health.start()
            health.join(30)  # a stalled event loop answers only once the store does: never, until released
            answered_while_held = ("health" in answers, submit.is_alive())
            store.released.set()
            submit.join(30)
            health.join(30)
    finally:
        store.close()
    # (health answered, the submission still waiting): both, or the loop was not free while the store held.
    assert answered_while_held == (True, True), f"/health/ did not answer while a submission waited: {answers}"
    assert answers["health"].status_code == 200, answers["health"].text
    assert answers["post"].status_code == 422 and "slow.mp4" in answers["post"].text, answers["post"].text


def test_an_unreachable_store_is_a_503_not_a_missing_source(settings: Settings, tmp_path: Path) -> None:
    """S3 down at submission: POST answers the documented 503, not a 422 that calls the source missing."""
    gone = S3Server(tmp_path / "moto.log").start()
    # One try each (botocore and s3fs retry a refused connection for ~9 s otherwise).
    options = {**gone.storage_options(), "config_kwargs": {"retries": {"max_attempts": 1}}, "retries": 1}
    gone.stop()
    app = create_app(settings.model_copy(update={"media_storage_options": options}))
    with TestClient(app=app, timeout=60) as client:
        response = client.post("/jobs/?job_type=ingest", json={"project_id": "proj_s3", "source_uri": "talk.mp4"})
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert detail.startswith("Failed to enqueue job: Media storage unreachable: checking 'talk.mp4' failed"), detail


# --- the cache itself, on the same S3 server -------------------------------------------------------


def _store_with(s3: S3Server, bucket: str, objects: dict[str, bytes]) -> Storage:
    for name, data in objects.items():
        s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=data)
    s3.reset()
    return Storage(f"s3://{bucket}/{PREFIX}", options=s3.storage_options())


def test_the_cache_fetches_once_and_sees_overwrites(s3: S3Server, bucket: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVE_MEDIA_CACHE_DIR", str(tmp_path / "cache"))
    storage = _store_with(s3, bucket, {"a.bin": b"a" * 4000})
    for _ in range(3):
        with storage.reading("a.bin") as local:
            assert local.read_bytes() == b"a" * 4000 and local.name == "a.bin"
    assert s3.reads() == {f"/{bucket}/{PREFIX}/a.bin": 4000}
    # Overwritten (same size, new ETag): the new content, fetched again.
    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/a.bin", Body=b"b" * 4000)
    with storage.reading("a.bin") as local:
        assert local.read_bytes() == b"b" * 4000
    assert s3.reads() == {f"/{bucket}/{PREFIX}/a.bin": 8000}
    # A file a task writes is kept: reading it back costs no GET.
    with storage.writing("out/c.bin") as tmp:
        tmp.write_bytes(b"c" * 100)
    with storage.reading("out/c.bin") as local:
        assert local.read_bytes() == b"c" * 100
    assert f"/{bucket}/{PREFIX}/out/c.bin" not in s3.reads()
    with pytest.raises(FileNotFoundError):
        with storage.reading("missing.bin"):
            pass


def test_the_cache_evicts_the_least_recently_used_but_never_a_file_in_use(s3: S3Server, bucket: str,
                                                                         tmp_path: Path) -> None:
    storage = _store_with(s3, bucket, {name: name.encode() * 1000 for name in ("a", "b", "c", "d")})
    fs, root = storage._fs()
    cache = MediaCache(tmp_path / "cache", max_bytes=2500)  # room for two of the 1000-byte objects

    def read(name: str) -> Any:
        return cache.reading(fs, f"{root}/{name}", name=name, scope="test")

    def cached() -> set[str]:
        return {p.name for p in (tmp_path / "cache" / "data").glob("*/*")}

    with read("a"):
        pass
    with read("b"):
        pass
    with read("a"):  # a is now the most recently used
        pass
    with read("c"):
        pass
    assert cached() == {"a", "c"}  # b went
    with read("c") as in_use:
        with read("d"):  # a goes, the least recently used now that c is in use
            assert cached() == {"c", "d"}
            with read("a"):  # c and d in use fill the bound: a stays while it is read...
                assert cached() == {"a", "c", "d"}
            assert cached() == {"c", "d"}  # ...and goes once released
        assert in_use.read_bytes() == b"c" * 1000
