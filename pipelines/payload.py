"""Checking a job payload against a graph's declared inputs, at submission.

The payload is the reference's "arbitrary configuration": each declared input is type-checked and defaulted,
other keys are kept as they are, except one close to a declared input, which is a 422 naming it with a "did you
mean" (a misspelt key would otherwise run the job with the default instead). An input
of type ``source`` is read from the payload's ``source_uri`` or ``source_asset_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, create_model

from operators.errors import did_you_mean
from pipelines.errors import PayloadError
from pipelines.graph import Graph
from pipelines.spec import InputSpec

__all__ = ["BoundPayload", "SourceRequest", "bind_payload", "check_model_value", "fill_merge_fields", "payload_fields", "payload_keys",
           "unknown_keys"]


_SCALARS: dict[str, Any] = {
    "string": StrictStr,
    "integer": StrictInt,
    "number": StrictInt | float,
    "boolean": StrictBool,
    "object": dict[str, Any],
    "list": list[Any],
    "list[int]": list[StrictInt],
    "list[number]": list[StrictInt | float],
    "list[string]": list[StrictStr],
}


@dataclass(frozen=True, slots=True)
class SourceRequest:
    """What the payload asked for; the scheduler resolves it to a confined storage path."""

    source_uri: str | None = None
    source_asset_id: str | None = None


@dataclass(frozen=True, slots=True)
class BoundPayload:
    """The payload with defaults filled in, and the source inputs still to resolve."""

    payload: dict[str, Any]
    values: dict[str, Any]
    sources: dict[str, SourceRequest]


def bind_payload(graph: Graph, payload: dict[str, Any], *, fallbacks: dict[str, Any] | None = None) -> BoundPayload:
    """Check ``payload`` against ``graph``'s inputs; raise :class:`PayloadError` naming each field.

    ``fallbacks`` fill model inputs the payload leaves out (a clip version's timeline).
    """
    if not isinstance(payload, dict):
        raise PayloadError([{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}])
    fields: dict[str, Any] = {}
    sources: dict[str, SourceRequest] = {}
    models: dict[str, Any] = {}
    errors: list[dict[str, Any]] = unknown_keys(graph, payload)
    for name, spec in graph.spec.inputs.items():
        if spec.type == "source":
            request = _source_request(name, spec, payload, errors, (fallbacks or {}).get(name))
            if request is not None:
                sources[name] = request
            continue
        if name in graph.input_models:
            if spec.nullable and name in payload and payload[name] is None:
                models[name] = None  # asked for explicitly: null, not the default
                continue
            raw = payload.get(name, _filled((fallbacks or {}).get(name)))
            models[name] = check_model_value(name, spec, graph.input_models[name], raw, payload, errors)
            continue
        fields[name] = _field(spec)
    model = create_model(f"{graph.name}_payload", __config__=ConfigDict(extra="allow"), **fields)
    # Plain inputs may come from the clip version too (its name), checked like the payload's own.
    filled = {name: _filled((fallbacks or {}).get(name)) for name in fields
              if graph.spec.inputs[name].from_clip_version and name not in payload}
    try:
        checked = model.model_validate({**payload, **{k: v for k, v in filled.items() if v is not None}})
    except ValidationError as exc:
        errors.extend(
            {"loc": ["body", *map(str, err["loc"])], "msg": err["msg"], "type": err["type"]} for err in exc.errors()
        )
        checked = None
    if checked is not None and not errors:
        # Only once each input is fine on its own: an invalid timeline is not also a missing one.
        values = {name: getattr(checked, name) for name in fields} | models
        errors.extend(_linked_inputs(graph, values, sources, named_clip_version=bool(fallbacks)))
        errors.extend(_fan_out_limits(graph, values))
    if errors:
        raise PayloadError(errors)
    assert checked is not None
    _check_node_params(graph, values)
    merged = dict(payload)
    for name, value in values.items():
        merged.setdefault(name, value)
    return BoundPayload(payload=merged, values=values, sources=sources)


def payload_fields(graph: Graph) -> dict[str, Any]:
    """The JSON Schema of each plain input (not a source, not a payload model), as the payload is checked."""
    fields = {name: _field(spec) for name, spec in graph.spec.inputs.items()
              if spec.type != "source" and name not in graph.input_models}
    schema = create_model(f"{graph.name}_fields", **fields).model_json_schema()  # type: ignore[call-overload]
    return {name: {k: v for k, v in value.items() if k != "title"} for name, value in schema["properties"].items()}


def payload_keys(graph: Graph) -> list[str]:
    """The keys a payload of ``graph`` may hold: its inputs, a source input given as source_uri or source_asset_id."""
    keys = [name for name, spec in graph.spec.inputs.items() if spec.type != "source"]
    if any(spec.type == "source" for spec in graph.spec.inputs.values()):
        keys += ["source_uri", "source_asset_id"]
    return keys


def unknown_keys(graph: Graph, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A 422 entry for each key the graph does not take but that is close to one it does (``projct_id``,
    ``preset`` for ``presets``): such a typo would otherwise run the job with the default, silently.

    Other keys stay, as the API reference promises ("arbitrary configuration consumed by workers": a client's
    own metadata, kept in the record); the typed schemas (``<JobType>Payload``) list only the inputs.
    """
    known = payload_keys(graph)
    errors = []
    for key in payload:
        hint = did_you_mean(key, known) if key not in known else ""
        if hint:
            errors.append({"loc": ["body", key], "type": "extra_forbidden",
                           "msg": f"Unknown field '{key}' for job type '{graph.name}'.{hint} It takes: "
                                  f"{', '.join(known)}"})
    return errors


def check_model_value(name: str, spec: InputSpec, model: type[BaseModel], raw: Any, payload: dict[str, Any],
                 errors: list[dict[str, Any]]) -> Any:
    """A payload model input, validated with its model; errors carry the nested path."""
    if raw is None and spec.default is not None:
        raw = spec.default
    if raw is None:
        if spec.is_required:
            hint = " (or name a clip version with clip_version_id)" if spec.from_clip_version else ""
            errors.append({"loc": ["body", name], "msg": f"Field required{hint}", "type": "missing"})
        return None
    if spec.merge_from is not None:
        merge = payload.get(spec.merge_from) or {}
        if not isinstance(merge, dict):
            return None  # the merge input's own type check reports it
        raw = fill_merge_fields(raw, merge, ["body", name], errors)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        clean = getattr(model, "clean_error_loc", None)
        for err in exc.errors():
            loc = [p for p in err["loc"] if not _is_branch_name(p)]
            loc = list(clean(tuple(loc))) if clean is not None else loc
            msg = err["msg"].removeprefix("Value error, ")
            errors.append({"loc": ["body", name, *loc], "msg": msg, "type": err["type"]})
        return None


def _filled(value: Any) -> Any:
    """A clip version's field as a fallback: an empty one (``{}``) counts as missing."""
    return None if value in ({}, [], "") else value


def _has_value(name: str, values: dict[str, Any], sources: dict[str, SourceRequest]) -> bool:
    """Set, and not empty (a model may say it is empty with ``__bool__``)."""
    value = sources.get(name, values.get(name))
    return value is not None and bool(value)


def _linked_inputs(graph: Graph, values: dict[str, Any],
                   sources: dict[str, SourceRequest], *, named_clip_version: bool) -> list[dict[str, Any]]:
    """``required_unless`` and ``requires``: inputs that only make sense together, checked at POST."""
    errors: list[dict[str, Any]] = []
    inputs = graph.spec.inputs
    for name, spec in inputs.items():
        other = spec.required_unless
        if other is not None and not _has_value(name, values, sources) and not _has_value(other, values, sources):
            fields = "source_uri or source_asset_id" if spec.type == "source" else name
            where = (" The job's clip version has neither." if named_clip_version and
                     (inputs[name].from_clip_version or inputs[other].from_clip_version) else "")
            errors.append({"loc": ["body", "source_uri" if spec.type == "source" else name], "type": "missing",
                           "msg": f"Field required: give {fields}, or {other}{_clip_version_hint(inputs, name, other)}."
                                  f"{where}"})
        if spec.requires and _has_value(name, values, sources):
            for needed in spec.requires:
                if not _has_value(needed, values, sources):
                    hint = " (or name a clip version with clip_version_id)" if inputs[needed].from_clip_version else ""
                    errors.append({"loc": ["body", name], "type": "missing",
                                   "msg": f"{name} needs {needed}: give {needed}{hint}"})
    return errors


def _clip_version_hint(inputs: dict[str, InputSpec], *names: str) -> str:
    fields = [f"{inputs[n].from_clip_version.split('.')[0]}" for n in names if inputs[n].from_clip_version]
    if not fields:
        return ""
    return f" (or a clip_version_id whose clip version has {' or '.join(dict.fromkeys(fields))})"


def _is_branch_name(part: Any) -> bool:
    """pydantic puts a union member's name in an error path (``CropRect``, ``list[CropKey]``)."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper())


_MERGE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def fill_merge_fields(value: Any, merge: dict[str, Any], loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    """``{{NAME}}`` in every string replaced by ``merge[NAME]``; a name without a value is an error."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in merge or merge[key] is None:
                errors.append({"loc": loc, "msg": f"merge field '{{{{{key}}}}}' has no value: add it to the "
                               "payload's merge object", "type": "value_error"})
                return match.group(0)
            return str(merge[key])

        # A string that is only a merge field takes the value's own type (a number stays a number).
        whole = _MERGE.fullmatch(value.strip())
        if whole and whole.group(1) in merge and not isinstance(merge[whole.group(1)], str | type(None)):
            return merge[whole.group(1)]
        return _MERGE.sub(replace, value)
    if isinstance(value, dict):
        return {k: fill_merge_fields(v, merge, [*loc, k], errors) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_merge_fields(v, merge, [*loc, i], errors) for i, v in enumerate(value)]
    return value


def _field(spec: InputSpec) -> tuple[Any, Any]:
    base = _SCALARS[spec.type]
    constraints: dict[str, Any] = {}
    if spec.minimum is not None:
        constraints["ge"] = spec.minimum
    if spec.maximum is not None:
        constraints["le"] = spec.maximum
    if spec.min_items is not None:
        constraints["min_length"] = spec.min_items
    if spec.max_items is not None:
        constraints["max_length"] = spec.max_items
    if spec.max_length is not None:
        constraints["max_length"] = spec.max_length
    annotated: Any = Annotated[base, Field(**constraints)] if constraints else base
    if spec.enum is not None:
        from typing import Literal

        annotated = Literal[tuple(spec.enum)]  # type: ignore[valid-type]
    if spec.nullable:
        annotated = annotated | None
    if spec.is_required:
        return annotated, Field(..., description=spec.description)
    if spec.default is None:
        return annotated | None, Field(None, description=spec.description)
    return annotated, Field(spec.default, description=spec.description)


def _source_request(
    name: str, spec: InputSpec, payload: dict[str, Any], errors: list[dict[str, Any]], fallback: Any = None
) -> SourceRequest | None:
    uri, asset = payload.get("source_uri"), payload.get("source_asset_id")
    if spec.asset_only and uri is not None:
        errors.append({"loc": ["body", "source_uri"], "type": "value_error",
                       "msg": f"'{name}' must be an asset: give source_asset_id (upload the file with POST /assets/ "
                              "first); this job's outputs refer to its source by asset id"})
        return None
    if uri is None and asset is None and isinstance(fallback, str):
        asset = fallback  # from the job's clip version (e.g. its latest render's video)
    for key, value in (("source_uri", uri), ("source_asset_id", asset)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            errors.append({"loc": ["body", key], "msg": "Input should be a non-empty string", "type": "string_type"})
            return None
    if uri is None and asset is None:
        if spec.is_required:
            errors.append(
                {
                    "loc": ["body", "source_uri"],
                    "msg": f"Field required: give source_uri (a path under the media root) or source_asset_id for '{name}'",
                    "type": "missing",
                }
            )
        return None
    return SourceRequest(source_uri=uri, source_asset_id=asset)


def _fan_out_limits(graph: Graph, values: dict[str, Any]) -> list[dict[str, Any]]:
    """A fan-out over a payload list is known now: past its node's ``max_tasks`` it is a 422, not a failed job.

    Only a limit the graph sets (the node's or the graph's); the MAX_TASKS_PER_NODE default is the
    dispatcher's, which checks every fan-out again before it starts one.
    """
    errors = []
    for node in graph.nodes.values():
        ref = node.map
        if ref is None or ref.scope != "payload" or node.max_tasks is None or ref.path:
            continue
        items = values.get(ref.name)
        if isinstance(items, list) and len(items) > node.max_tasks:
            errors.append({"loc": ["body", ref.name], "type": "too_long",
                           "msg": f"{len(items)} items, but node '{node.name}' starts one task per item, at most "
                                  f"{node.max_tasks} (its max_tasks)"})
    return errors


def _check_node_params(graph: Graph, values: dict[str, Any]) -> None:
    """Params filled from the payload must fit their operators now, not when the task runs."""
    from operators.errors import OperatorParamsError
    from pipelines.refs import Ref

    errors: list[dict[str, Any]] = []
    for node in graph.nodes.values():
        if node.params_template is None:
            continue
        try:
            node.bind_params(values)
        except OperatorParamsError as exc:
            # Name the payload field each rejected param was filled from.
            for where, msg in exc.problems or (("(params)", str(exc)),):
                source = node.params_template.get(where.split(".")[0])
                loc = ["body", source.name] if isinstance(source, Ref) else ["body"]
                errors.append({"loc": loc, "msg": f"{node.name}.{where}: {msg}", "type": "value_error"})
    if errors:
        raise PayloadError(errors)
