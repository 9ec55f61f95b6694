"""Values that pass between operators, and from operators into job outputs.

They are frozen pydantic models: cheap to pickle to workers, JSON-ready for
``result_payload.outputs``, and they never hold PyAV objects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen", "NewClipVersion", "SourceRef", "StoredFile"]


class Frozen(BaseModel):
    """Base for values exchanged between tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRef(Frozen):
    """A job's source media: a path relative to the media root, and the asset it came from."""

    path: str
    asset_id: str | None = None


class StoredFile(Frozen):
    """A file an operator wrote to storage.

    The dispatcher registers every ``StoredFile`` found in a job's outputs as an asset
    of the given ``kind``, so each output is downloadable the same way.
    """

    path: str
    kind: str
    content_type: str
    size: int
    meta: dict[str, object] = {}


class NewClipVersion(Frozen):
    """A clip version a job proposes (a clip generate_clip found), made when its outputs are published.

    In ``result_payload.outputs`` it becomes the new version's id (``cv_…``), in the job's project.
    A :class:`StoredFile` inside ``timeline`` (a transcript the job made, for the captions) is
    published as an asset first and replaced by its id: one asset, however often it is named.
    """

    timeline: dict[str, Any]
    name: str | None = None
    metadata: dict[str, Any] = {}
    #: The clip it is the next version of (in the job's project); None: the first version of a new clip.
    clip_id: str | None = None
