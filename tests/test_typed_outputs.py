"""The OpenAPI document types each job type's ``result_payload.outputs`` (issue 21, item 4): real
completed jobs' records validate against ``JobRecord`` and their ``<JobType>Outputs``, and not
against another job type's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
from litestar.testing import TestClient

from tests.conftest import wait_for
from tests.mediagen import make_clip


def _validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def _run(client: TestClient[Any], job_type: str, payload: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = client.post(f"/v1/jobs/?job_type={job_type}{query}", json={"project_id": "typed", **payload})
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"], timeout=120)
    assert done["status"] == "completed", done
    return done


def test_completed_jobs_match_their_outputs_schema(client: TestClient[Any], tmp_path: Path) -> None:
    path = make_clip(tmp_path / "c.mp4", seconds=1.0, size=(160, 96), fps="25")
    source = client.post("/v1/assets/?project_id=typed&filename=c.mp4", content=path.read_bytes()).json()["id"]
    document = client.get("/schema/openapi.json").json()
    records = {
        "ingest": _run(client, "ingest", {"source_asset_id": source, "proxy_heights": [96]}),
        "export": _run(client, "export", {"source_asset_id": source, "loudness": None, "presets": [
            "mp4-720p", {"name": "hls", "ladder": [96], "segment_seconds": 2, "gop_seconds": 1}]}),
    }
    for job_type, record in records.items():
        _validator(document, "JobRecord").validate(record)
        outputs = record["result_payload"]["outputs"]
        _validator(document, f"{job_type.capitalize()}Outputs").validate(outputs)
        other = "ExportOutputs" if job_type == "ingest" else "IngestOutputs"
        assert list(_validator(document, other).iter_errors(outputs)), f"{job_type} outputs fit {other}"
    exported = records["export"]["result_payload"]["outputs"]
    assert exported["mp4-720p"]["content_type"] == "video/mp4" and exported["webm-1080p"] is None
    broken = {**exported, "mp4-720p": {"url": 3}}  # a file that is not an asset record
    assert list(_validator(document, "ExportOutputs").iter_errors(broken))


def test_every_operation_is_described_and_so_is_the_websocket(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    operations = {o["operationId"]: o for item in document["paths"].values() for o in item.values()
                  if isinstance(o, dict) and "operationId" in o}
    assert len(operations) >= 24
    assert [name for name, o in operations.items() if len(o.get("description", "")) < 20] == []
    assert "/v1/ws/jobs/{job_id}" in document["info"]["description"] and "4404" in document["info"]["description"]
    result = document["components"]["schemas"]["ResultPayload"]["properties"]["outputs"]
    assert {"$ref": "#/components/schemas/RenderOutputs"} in result["anyOf"]


def test_a_stored_clip_version_reads_back_as_a_timeline(client: TestClient[Any], tmp_path: Path) -> None:
    path = make_clip(tmp_path / "c.mp4", seconds=1.0, size=(160, 96), fps="25")
    source = client.post("/v1/assets/?project_id=typed&filename=c.mp4", content=path.read_bytes()).json()["id"]
    timeline = {"canvas": {"width": 160, "height": 96, "fps": 25},
                "tracks": [{"type": "video", "clips": [{"asset": source, "in": 0, "out": 1}]}]}
    created = client.post("/v1/clip-versions/", json={"project_id": "typed", "timeline": timeline})
    assert created.status_code == 201, created.text
    document = client.get("/schema/openapi.json").json()
    cv_id = created.json()["id"]
    _validator(document, "ClipVersion").validate(client.get(f"/v1/clip-versions/{cv_id}").json())
    assert document["components"]["schemas"]["ClipVersion"]["properties"]["timeline"] == {
        "$ref": "#/components/schemas/Timeline"}
    # A render of it is appended to its renders, typed: {job_id, created_at, outputs: {video: Asset, poster}}.
    _run(client, "render", {"output": {"preset": "ultrafast"}}, f"&clip_version_id={cv_id}")
    version = client.get(f"/v1/clip-versions/{cv_id}").json()
    assert len(version["renders"]) == 1
    _validator(document, "ClipVersion").validate(version)
    items = document["components"]["schemas"]["ClipVersion"]["properties"]["renders"]["items"]
    entry = next(e for e in items.get("anyOf", [items]) if "render job" in e["description"])
    assert entry["properties"]["outputs"]["properties"]["video"] == {"$ref": "#/components/schemas/Asset"}
    as_render = jsonschema.Draft202012Validator({**entry, "components": document["components"]})
    as_render.validate(version["renders"][0])
    assert list(as_render.iter_errors({**version["renders"][0], "outputs": {"video": {"id": 7}}}))
