"""Storage behind an fsspec URL (as ``s3://...`` on a cluster), here fsspec's in-memory filesystem.

The media operators must only touch media through ``Storage.reading`` / ``writing``, so the whole
ingest chain works the same on a remote store as on a local folder.
"""

from __future__ import annotations

import uuid

import av
import pytest

from operators import PathOutsideRootError, Storage
from operators.context import OpContext
from tests.mediagen import make_clip, run_ingest


@pytest.fixture()
def remote() -> Storage:
    return Storage(f"memory://ave-test-{uuid.uuid4().hex}/media")


def test_ingest_chain_on_a_remote_store(remote: Storage, tmp_path) -> None:
    clip = make_clip(tmp_path / "src.mp4", seconds=1.5, size=(160, 120), fps="30", gop=15)
    remote.put_file(clip, "uploads/src.mp4")
    assert not remote.is_local and remote.exists("uploads/src.mp4")
    assert remote.size("uploads/src.mp4") == clip.stat().st_size

    ctx = OpContext(job_id="job_remote", node="x", storage=remote)
    info, chunks, parts, track, proxies = run_ingest(ctx, "uploads/src.mp4", target_seconds=0.5)
    assert len(chunks) >= 2 and track is not None
    (proxy,) = proxies
    assert proxy.path == "jobs/job_remote/proxy/720p.mp4" and remote.exists(proxy.path)
    assert proxy.size == remote.size(proxy.path)
    with remote.reading(proxy.path) as local, av.open(str(local)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == info.video.frame_count == 45


def test_remote_paths_stay_under_the_root(remote: Storage) -> None:
    for bad in ("/etc/passwd", "../other/x.mp4", "a/../../x.mp4"):
        with pytest.raises(PathOutsideRootError):
            remote.exists(bad)
    with pytest.raises(FileNotFoundError):
        with remote.reading("missing.mp4"):
            pass
