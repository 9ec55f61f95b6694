"""The public job record, assembled from the fields of its Redis hash (exactly the API reference's fields)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["public_record"]

_decode_json = msgspec.json.decode


def _eta(fields: dict[str, str]) -> float | None:
    """Seconds left, estimated by the dispatcher from the progress rate; 0 once completed, else null."""
    status = fields.get("status")
    if status == "completed":
        return 0.0
    raw = fields.get("eta") or "null"
    if status != "in_progress" or raw == "null":
        return None
    return float(raw)


def public_record(fields: dict[str, str], log: list[dict[str, Any]], queue_name: str) -> dict[str, Any]:
    """Assemble the public record: exactly the reference's fields, in its order."""
    status = fields["status"]
    result_payload: dict[str, Any] | None = None
    if fields.get("started_at") or fields.get("result") or log:
        result_payload = {"progress": float(fields.get("progress") or 0), "eta_seconds": _eta(fields), "log": log}
        if fields.get("result"):
            extra = _decode_json(fields["result"])
            for key in ("progress", "eta_seconds", "log"):
                extra.pop(key, None)
            result_payload.update(extra)
    return {
        "id": fields["id"],
        "created_at": fields["created_at"],
        "updated_at": fields["updated_at"],
        "clip_version_id": _decode_json(fields.get("clip_version_id") or "null"),
        "job_type": fields["job_type"],
        "status": status,
        "queue_name": queue_name,
        "priority": int(fields.get("priority") or 0),
        "payload": _decode_json(fields.get("payload") or "{}"),
        "result_payload": result_payload,
        "error_message": fields.get("error_message") or None,
        "started_at": fields.get("started_at") or None,
        "completed_at": fields.get("completed_at") or None,
    }


