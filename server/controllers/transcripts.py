"""``PATCH /assets/{id}/words``: correct a transcript's words; the answer is a new transcript asset."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Controller, patch
from litestar.di import Provide
from pydantic import BaseModel, ConfigDict, Field

from operators.speech.corrections import WordIndexError, correct_words
from operators.speech.models import Transcript
from operators.storage import Storage
from scheduler.records.assets import AssetStore, public_asset
from server.deps import provide_assets, provide_storage
from server.errors import unprocessable
from server.openapi import responses
from server.schemas import Asset

__all__ = ["TranscriptController", "WordCorrection"]


class WordCorrection(BaseModel):
    """Word ``index`` (counted from 0 across the whole transcript) now reads ``text``."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    text: str = Field(min_length=1, max_length=200, pattern=r"\S")


def _corrected(storage: Storage, record: dict[str, Any], edits: list[WordCorrection], path: str) -> int:
    """Write the corrected transcript to ``path``; its size."""
    with storage.reading(record["path"]) as local:
        transcript = Transcript.model_validate_json(local.read_bytes())
    fixed = correct_words(transcript, [(e.index, e.text) for e in edits])
    with storage.writing(path) as tmp:
        tmp.write_text(fixed.model_dump_json(indent=2) + "\n")
    return storage.size(path)


class TranscriptController(Controller):
    path = "/assets"
    tags = ["assets"]
    dependencies = {
        "assets": Provide(provide_assets, sync_to_thread=False),
        "storage": Provide(provide_storage, sync_to_thread=False),
    }

    @patch("/{asset_id:str}/words", status_code=201, summary="Correct a transcript's words (a new transcript)",
           operation_id="correctTranscriptWords",
           responses=responses(201, Asset, 404, 422, 503, description="The corrected transcript, a new asset"))
    async def correct_transcript_words(self, assets: AssetStore, storage: Storage, asset_id: str,
                                       data: list[WordCorrection]) -> dict[str, Any]:
        """The words keep their times; segment texts are rebuilt. Timelines naming the new asset caption with it.

        ``curl -X PATCH http://localhost:8000/v1/assets/asset_…/words -H 'Content-Type: application/json' -d
        '[{"index": 3, "text": "Kubernetes"}]'``
        """
        record = await assets.get(asset_id)
        if record.get("kind") != "transcript":
            raise unprocessable(["path", "asset_id"], f"asset {asset_id} is a {record.get('kind')}, not a transcript")
        if not data:
            raise unprocessable(["body"], "give at least one correction")
        new_id = assets.new_id()
        path = f"edits/{record.get('project_id') or '_'}/{new_id}/transcript.json"
        try:
            size = await to_thread.run_sync(_corrected, storage, record, data, path)
        except WordIndexError as exc:
            raise unprocessable(["body", exc.position, "index"], str(exc)) from None  # type: ignore[list-item]
        meta = {**(record.get("meta") or {}), "corrected_from": asset_id, "corrections": len(data)}
        created = await assets.create(path=path, kind="transcript", content_type="application/json", size=size,
                                      project_id=record.get("project_id"), filename="transcript.json", meta=meta,
                                      asset_id=new_id, derived_from=[asset_id, *(record.get("derived_from") or [])])
        return public_asset(created)
