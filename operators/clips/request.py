"""The payload parts of ``generate_clip`` that name assets, checked at POST.

``transcript_asset_id`` (input type ``clip_transcript``) names a transcript to reuse instead
of transcribing. At submission the scheduler looks it up in the job's project and hands it
to :meth:`TranscriptRef.with_assets` with the job's resolved source: it must be a transcript
(a transcribe job's JSON) *of that source*, which the asset's lineage says (a transcript
made from ingest's audio lists the audio, then the video it came from). Anything else is a
422 naming ``transcript_asset_id``.

``min_seconds > max_seconds`` is caught by the ``clips.find`` params (a 422 naming
``min_seconds``): params filled from the payload are checked at POST too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.errors import AssetCheckError
from operators.media.info import AssetMedia
from operators.registry import payload_model
from operators.asset_uses import AssetUse
from operators.types import Frozen, SourceRef

__all__ = ["GivenTranscript", "TranscriptRef"]


class GivenTranscript(Frozen):
    """What the graph sees of a transcript the payload named: the asset, found and checked."""

    id: str
    path: str
    kind: str
    content_type: str
    project_id: str | None = None
    derived_from: tuple[str, ...] = ()


@payload_model("clip_transcript")
class TranscriptRef(BaseModel):
    """A transcript asset id (a string), to be checked against the job's source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _from_id(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"id": value.strip()}
        raise ValueError("give the id of a transcript asset (a transcribe job's 'transcript' output)")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # In the payload it is a plain id; the object form is only how it is held once parsed.
        return {"title": "TranscriptAssetId", "type": "string", "minLength": 1, "maxLength": 200,
                "description": "A transcript asset of the source (a transcribe job's 'transcript' output)"}

    # -- the payload model protocol (scheduler/admission/payload_assets.py) ------------------------------
    def asset_uses(self) -> list[AssetUse]:
        return [AssetUse((), self.id, "transcript")]

    def with_assets(self, assets: dict[str, AssetMedia], *, sources: dict[str, SourceRef] | None = None,
                    **_: Any) -> GivenTranscript:
        asset = assets[self.id]
        if asset.kind != "transcript":
            raise AssetCheckError([((), f"asset {self.id} is a {asset.kind}, not a transcript (a transcribe "
                                        "job's 'transcript' output)")])
        source = next(iter((sources or {}).values()), None)
        if source is not None:
            if source.asset_id is None:
                raise AssetCheckError([((), "a transcript can only be checked against a source asset: give the "
                                            "source as source_asset_id, or leave transcript_asset_id out to "
                                            "transcribe it")])
            if source.asset_id not in asset.derived_from:
                made_from = ", ".join(asset.derived_from) or "no recorded source"
                raise AssetCheckError([((), f"transcript {self.id} is not a transcript of {source.asset_id} "
                                            f"(it was made from {made_from})")])
        return GivenTranscript(id=asset.id, path=asset.path, kind=asset.kind, content_type=asset.content_type,
                               project_id=asset.project_id, derived_from=asset.derived_from)
