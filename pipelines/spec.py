"""The shape of a graph file, as pydantic models.

``graphs/<job_type>.yaml``::

    name: ingest
    description: ...
    inputs:                         # the payload schema, checked when a job is submitted
      project_id: {type: string}
      source: {type: source}        # from the payload's source_uri or source_asset_id
      renditions: {type: "list[int]", default: [720]}
    nodes:
      probe: {op: media.probe, inputs: {source: $payload.source}}
      transcode:
        op: media.transcode_chunk
        map: $split                 # one task per element, known only at run time
        inputs: {chunk: $item, info: $probe}
        retries: 2
        weight: 10                  # share of the job's progress, for the whole fan-out
      join: {op: media.join_chunks, inputs: {parts: {collect: $transcode}}}
    outputs: {proxy: $join}         # become result_payload.outputs
    then:                           # jobs chained once this one completes
      - {job_type: transcribe, when: $payload.transcript, payload: {...}}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChainSpec", "GraphSpec", "InputSpec", "InputType", "NodeSpec", "INPUT_TYPES"]

InputType = Literal[
    "string",
    "integer",
    "number",
    "boolean",
    "object",
    "list",
    "list[int]",
    "list[number]",
    "list[string]",
    "source",
]
INPUT_TYPES: tuple[str, ...] = InputType.__args__  # type: ignore[attr-defined]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """One payload field. Without a default it is required."""

    type: InputType
    default: Any = None
    required: bool | None = None
    description: str = ""
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_length: int | None = None

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return self.default is None and "default" not in self.model_fields_set


class NodeSpec(_Strict):
    """One step: an operator, its inputs and params, and how it runs on the cluster."""

    op: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    map: str | None = None
    retries: int = Field(0, ge=0, le=20)
    resources: dict[str, float] = Field(default_factory=dict)
    weight: float | None = Field(None, gt=0)
    description: str = ""

    @field_validator("map")
    @classmethod
    def _map_is_ref(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("$"):
            raise ValueError("map takes a reference, e.g. map: $split")
        return value


class ChainSpec(_Strict):
    """A job submitted when this one completes, e.g. ingest → transcribe."""

    job_type: str
    when: Any = True
    priority: Any = "$job.priority"
    payload: dict[str, Any] = Field(default_factory=dict)


class GraphSpec(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    version: int = 1
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    then: list[ChainSpec] = Field(default_factory=list)

    @field_validator("nodes", "inputs", "outputs")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        import re

        reserved = {"payload", "item", "job", "outputs"}
        for key in value:
            if not re.match(_NAME, key):
                raise ValueError(f"'{key}' is not a valid name (letters, digits and _)")
            if key in reserved:
                raise ValueError(f"'{key}' is reserved; choose another name")
        return value
