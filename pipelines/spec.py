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

__all__ = ["ChainSpec", "ClipVersionSpec", "GraphSpec", "InputSpec", "InputType", "NodeSpec", "INPUT_TYPES"]

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
#: Output names may also hold dashes: ``result_payload.outputs.mp4-1080p`` (a $reference cannot name them).
_OUTPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """One payload field. Without a default it is required."""

    #: A built-in type, or the name of a payload model an operator package registered
    #: (``@payload_model("timeline")``): validated with that model, errors at nested paths.
    type: str
    default: Any = None
    required: bool | None = None
    description: str = ""
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    max_length: int | None = None
    #: For a payload model: the payload field whose object fills ``{{NAME}}`` merge fields
    #: in the value's strings before it is checked (a field with no value is a 422).
    merge_from: str | None = None
    #: When the payload leaves this input out and the job names a ``clip_version_id``, take
    #: the value from that clip version's field (``timeline``).
    from_clip_version: str | None = None
    #: An explicit ``null`` in the payload is kept as null instead of taking the default
    #: (``loudness: null`` leaves the audio alone; leaving the field out takes the default).
    nullable: bool = False
    #: For a ``source``: only ``source_asset_id`` will do (the job's outputs name the source as an
    #: asset, e.g. generate_clip's clip versions); a ``source_uri`` is a 422 at POST.
    asset_only: bool = False
    #: Required unless this other input has a value (a source, or else a timeline to render).
    required_unless: str | None = None
    #: When this input is set (and not empty), these inputs must have values too
    #: (``timeline_formats`` needs a timeline).
    requires: list[str] | None = None

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
    #: Seconds one task of this node may run (each task of a fan-out); past it the job fails
    #: with a message naming the node and the limit, and its tasks are cancelled.
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    #: For a node with ``map``: the most tasks its fan-out may start. A longer list fails the job
    #: before any of them is submitted (overrides the graph's ``max_tasks_per_node``).
    max_tasks: int | None = Field(None, ge=1, strict=True)
    #: Run the node only if this holds: ``$payload.x``, ``not $payload.x``, or a list (all must).
    #: A skipped node's result is null (an empty list for a mapped one), for its dependents too.
    when: str | list[str] | None = None
    #: Keep the node's results in the content-addressed cache (its operator must declare a ``version``): a task
    #: whose key (operator, version, params, its inputs' content) was computed before is not run again.
    cache: bool = False
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
    #: One job per element of this list (``$outputs.clips``); ``$item`` is the element.
    for_each: str | None = None
    #: The chained job's ``clip_version_id`` (e.g. ``$item.clip_version_id``).
    clip_version_id: Any = None


class ClipVersionSpec(_Strict):
    """Downstream updates: when a job naming a ``clip_version_id`` completes, these outputs'
    assets are appended, with the job id, to that clip version's ``append`` list."""

    append: Literal["renders", "exports"]
    outputs: list[str] = Field(min_length=1)


class GraphSpec(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    version: int = 1
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    then: list[ChainSpec] = Field(default_factory=list)
    clip_version: ClipVersionSpec | None = None
    #: Seconds a whole job of this type may run (overrides the MAX_JOB_SECONDS setting).
    max_job_seconds: float | None = Field(None, gt=0)
    #: Most tasks one node's fan-out may start, for every node of this graph (overrides the
    #: MAX_TASKS_PER_NODE setting; a node's own ``max_tasks`` overrides this).
    max_tasks_per_node: int | None = Field(None, ge=1, strict=True)

    @field_validator("nodes", "inputs", "outputs")
    @classmethod
    def _names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        import re

        reserved = {"payload", "item", "job", "outputs"}
        pattern, allowed = (_OUTPUT_NAME, "letters, digits, _ and -") if info.field_name == "outputs" else \
            (_NAME, "letters, digits and _")
        for key in value:
            if not re.match(pattern, key):
                raise ValueError(f"'{key}' is not a valid name ({allowed})")
            if key in reserved:
                raise ValueError(f"'{key}' is reserved; choose another name")
        return value

    @field_validator("inputs")
    @classmethod
    def _input_links(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        """``required_unless`` and ``requires`` name other declared inputs."""
        for key, spec in value.items():
            for other in [spec.required_unless, *(spec.requires or [])]:
                if other is not None and (other not in value or other == key):
                    raise ValueError(f"input '{key}': '{other}' is not another declared input")
        return value
