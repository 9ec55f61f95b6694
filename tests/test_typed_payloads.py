"""The contract per job type: <JobType>Payload schemas from the graphs, and a misspelt key refused at POST."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient


def test_a_key_close_to_an_input_is_a_422_with_did_you_mean(client: TestClient[Any]) -> None:
    typo = client.post("/jobs/?job_type=ingest", json={"projct_id": "p1", "source_uri": "x.mp4"})
    assert typo.status_code == 422
    (error,) = [e for e in typo.json()["detail"] if e["loc"] == ["body", "projct_id"]]
    assert "Did you mean 'project_id'?" in error["msg"] and error["type"] == "extra_forbidden"
    preset = client.post("/jobs/?job_type=export", json={"project_id": "p1", "source_uri": "x.mp4", "preset": ["hls"]})
    assert preset.status_code == 422
    assert any(e["loc"] == ["body", "preset"] and "Did you mean 'presets'?" in e["msg"] for e in preset.json()["detail"])
    assert client.get("/jobs/").json() == [], "a refused job is not stored"


def test_each_job_type_has_its_payload_schema_and_create_job_takes_one_of_them(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    schemas = document["components"]["schemas"]
    for job_type in ("ingest", "transcribe", "generate_clip", "render", "export"):
        name = "".join(p.capitalize() for p in job_type.split("_")) + "Payload"
        schema = schemas[name]
        # Other keys are kept (the client's metadata): the schema says so; a near-miss of an input is a 422 (above).
        assert schema["additionalProperties"] is True and schema["type"] == "object", name
        assert "project_id" in schema["properties"], name
    assert schemas["ExportPayload"]["properties"]["presets"]["$ref"].endswith("/ExportPresets")
    assert "#/components/schemas/Timeline" in str(schemas["RenderPayload"]["properties"]["timeline"])
    assert {"source_uri", "source_asset_id"} <= set(schemas["IngestPayload"]["properties"])
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = {ref["$ref"].rsplit("/", 1)[-1] for ref in body["anyOf"]}
    assert {"IngestPayload", "ExportPayload", "RenderPayload", "TranscribePayload", "GenerateClipPayload"} <= refs
