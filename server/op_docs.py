"""Every operation's description in the OpenAPI document, with a curl example, and the document's own
description: what a generator cannot see (the WebSocket, the signed routes, auth, errors, paging).

The texts live here, apart from the handlers, so the document reads as one manual; :func:`describe`
fills in each operation that has no description of its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DOCUMENT", "OPERATIONS", "describe"]

_BASE = "http://localhost:8000/v1"

DOCUMENT = """Upload media, submit long-running jobs (ingest, transcribe, generate_clip, render, export) and follow
them to the end.

**Jobs.** `POST /v1/jobs/?job_type=…` with the payload as the body answers `202` with the job record;
`result_payload.progress` (0–1) and `result_payload.log` move while it runs, `result_payload.outputs` is the
job type's `<JobType>Outputs` once it completes. Errors are `{"detail": …}`: `404 Job X not found`, `422`
naming the field, `503 Failed to enqueue job: …` when Redis is down.

**Live updates.** Server-sent events at `GET /v1/jobs/{job_id}/events` (in this document), and a WebSocket at
`/v1/ws/jobs/{job_id}` (OpenAPI cannot describe one): it sends the job record as JSON (exactly
`GET /v1/jobs/{job_id}`'s body) on connect and after every change, then closes with `1000` after the terminal
record (the reason is the status); `4404` for an unknown job, `1011` when Redis is unreachable. What the
client sends is ignored. `websocat ws://localhost:8000/v1/ws/jobs/job_…`

**Auth.** With API tokens set, every operation but the health probes needs `Authorization: Bearer <token>`
(a `401` otherwise). A browser element that cannot send it (`<video>`, `<img>`, hls.js, `EventSource`,
`WebSocket`) uses a signed URL from `POST /v1/signed-urls`: `/v1/signed/<grant>/assets/{id}/content`,
`/v1/signed/<grant>/assets/{id}/{uri}` (an HLS package's files), `/v1/signed/<grant>/jobs/{id}/events`
and `/v1/signed/<grant>/ws/jobs/{id}`; a grant that does not open the request gets `403`.

**Lists** page with `cursor` (the `Link: <…>; rel="next"` header). **Downloads** take `Range`."""

OPERATIONS: dict[str, str] = {
    "health": f"Readiness: Redis and the Dask cluster reachable. `curl {_BASE}/health/`",
    "diagnostics": "Redis and Dask cluster details: workers, memory, queue depth, each running job's lifecycle.",
    "createJob": (f"Create and enqueue a job; the body is the job type's payload. `curl -X POST "
                  f"'{_BASE}/jobs/?job_type=ingest' -H 'Content-Type: application/json' "
                  "-d '{\"project_id\": \"p\", \"source_asset_id\": \"asset_…\"}'`"),
    "listJobs": f"Jobs, newest first, by status, job_type or project_id; paged by cursor. `curl '{_BASE}/jobs/?status=failed'`",
    "getJob": (f"The job's latest state. `log_since` returns only newer log lines; `If-None-Match` with the last "
               f"ETag answers 304 when nothing changed. `curl {_BASE}/jobs/job_…`"),
    "cancelJob": f"Cancel a job that has not finished (its tasks are stopped). `curl -X POST {_BASE}/jobs/job_…/cancel`",
    "deleteJob": f"Delete a finished job's record (its assets stay). `curl -X DELETE {_BASE}/jobs/job_…`",
    "listJobWebhooks": "The job's webhook deliveries, each attempt with its status code or error.",
    "replayJobWebhook": "Send the job's final event to its callback_url again.",
    "jobEvents": (f"Server-sent events: the job record after each change, until the terminal one; resume with "
                  f"Last-Event-ID. `curl -N {_BASE}/jobs/job_…/events`"),
    "listGraphs": f"The job types this server runs, with their inputs. `curl {_BASE}/graphs/`",
    "getGraph": f"One job type's graph: inputs, nodes, outputs (and a Mermaid diagram). `curl {_BASE}/graphs/render`",
    "uploadAsset": (f"Upload a source file as the raw body or multipart field 'file'; streamed to storage and hashed. "
                    f"`curl -X POST '{_BASE}/assets/?project_id=p&filename=talk.mp4' --data-binary @talk.mp4`"),
    "listAssets": f"A project's assets, newest first; by kind or by the job that made them. `curl '{_BASE}/assets/?project_id=p'`",
    "getAsset": f"An asset's record: kind, size, sha256, media facts, its download url. `curl {_BASE}/assets/asset_…`",
    "deleteAsset": "Delete an asset's record and file; 409 while a job that has not finished uses it.",
    "getAssetContent": f"The asset's bytes with its own Content-Type; one Range at a time. `curl -r 0-1023 {_BASE}/assets/asset_…/content`",
    "getPackageFile": f"A file of an HLS package, as its master playlist names it. `curl {_BASE}/assets/asset_…/720p/index.m3u8`",
    "createClipVersion": "Save a timeline as a new, immutable version of a clip (version 1 without clip_id).",
    "listClipVersions": f"Clip versions, newest first, by project or clip. `curl '{_BASE}/clip-versions/?clip_id=clip_…'`",
    "getClipVersion": "A clip version: its timeline, and the renders and exports made from it.",
    "deleteClipVersion": "Delete a clip version (its renders' assets stay); 409 while a job that has not finished uses it.",
    "createBrandKit": (f"A project's brand kit: fonts (font assets), colours and a logo, which a timeline names by "
                       f"`brand_kit` for its text and caption defaults. `curl -X POST {_BASE}/brand-kits/ -H "
                       "'Content-Type: application/json' -d '{\"project_id\": \"p\", \"colors\": {\"accent\": \"#FFCC00\"}}'`"),
    "listBrandKits": f"A project's brand kits, newest first. `curl '{_BASE}/brand-kits/?project_id=p'`",
    "getBrandKit": f"A brand kit: its fonts, colours and logo. `curl {_BASE}/brand-kits/bk_…`",
    "deleteBrandKit": "Delete a brand kit; timelines that name it are refused (422) from then on.",
    "correctTranscriptWords": (f"Correct words of a transcript, times kept: a new transcript asset, which renders then "
                               f"show. `curl -X PATCH {_BASE}/assets/asset_…/words -H 'Content-Type: application/json' "
                               "-d '[{\"index\": 3, \"text\": \"Kubernetes\"}]'`"),
    "getMetrics": f"Prometheus metrics: jobs by type and status, queue depth, durations, Redis health, the result "
                  f"cache's hits, misses, bytes and evictions. `curl {_BASE}/metrics`",
    "clearCache": f"Empty the result cache: every entry forgotten and its files deleted (jobs running keep what they "
                  f"were served: their own copies). Answers what was removed. `curl -X DELETE {_BASE}/cache`",
}


def describe(operations: dict[str, Any]) -> None:
    """Give each operation without a description its text from :data:`OPERATIONS`."""
    for operation_id, operation in operations.items():
        if not getattr(operation, "description", None) and operation_id in OPERATIONS:
            operation.description = OPERATIONS[operation_id]
