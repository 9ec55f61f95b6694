"""DELETE /assets/{id} and DELETE /clip-versions/{id}: 204, 404, and 409 while an unfinished job uses the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from tests.conftest import wait_for, wait_until
from tests.mediagen import make_clip

PROJECT = "proj_del"


def _upload(client: TestClient[Any], path: Path) -> dict[str, Any]:
    response = client.post(f"/assets/?project_id={PROJECT}&filename={path.name}", content=path.read_bytes())
    assert response.status_code == 201, response.text
    return response.json()


def test_an_asset_is_deleted_record_and_file_unless_a_running_job_uses_it(
        client: TestClient[Any], media_root: Path, tmp_path: Path) -> None:
    asset = _upload(client, make_clip(tmp_path / "a.mp4", seconds=1.0, size=(160, 120)))
    stored = next(p for p in media_root.rglob("*.mp4") if p.stat().st_size == asset["size"])
    job = client.post("/jobs/?job_type=sleepy", json={"seconds": 30, "tag": asset["id"]}).json()
    wait_for(client, job["id"], statuses=("in_progress",))
    busy = client.delete(f"/v1/assets/{asset['id']}")
    assert busy.status_code == 409, busy.text
    assert busy.json() == {"detail": f"Asset {asset['id']} is used by job {job['id']}, which has not finished: "
                                     "wait for it to end, or cancel it, then delete again"}
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/assets/{asset['id']}").status_code == 204
    assert client.get(f"/assets/{asset['id']}").status_code == 404
    assert not stored.exists()
    assert client.get(f"/assets/?project_id={PROJECT}").json() == []
    missing = client.delete(f"/assets/{asset['id']}")
    assert missing.status_code == 404 and missing.json() == {"detail": f"Asset {asset['id']} not found"}


def test_a_clip_version_is_deleted_from_its_listings(client: TestClient[Any], tmp_path: Path) -> None:
    asset = _upload(client, make_clip(tmp_path / "b.mp4", seconds=1.0, size=(160, 120)))
    timeline = {"canvas": {"width": 160, "height": 120, "fps": 30},
                "tracks": [{"type": "video", "clips": [{"asset": asset["id"], "in": 0, "out": 1}]}]}
    first = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline}).json()
    second = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline,
                                                  "clip_id": first["clip_id"]}).json()
    job = client.post(f"/jobs/?job_type=sleepy&clip_version_id={second['id']}", json={"seconds": 30}).json()
    wait_until(lambda: client.get(f"/jobs/{job['id']}").json()["status"] == "in_progress" or None, 30, "a start")
    assert client.delete(f"/clip-versions/{second['id']}").status_code == 409
    client.post(f"/jobs/{job['id']}/cancel")
    assert client.delete(f"/clip-versions/{second['id']}").status_code == 204
    assert client.get(f"/clip-versions/{second['id']}").status_code == 404
    listed = client.get(f"/clip-versions/?clip_id={first['clip_id']}").json()
    assert [cv["id"] for cv in listed] == [first["id"]]
    assert client.delete(f"/clip-versions/{second['id']}").status_code == 404
    assert client.get(f"/assets/{asset['id']}").status_code == 200  # its assets stay
