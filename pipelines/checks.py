"""The load-time checks of a graph's parts, and the collector that keeps every problem they find.

Each check raises one :class:`GraphError` for one problem; the loader runs each part's checks
inside :meth:`Problems.check`, which records the error and carries on, so that one load of a
graph reports all of its problems at once (``GraphError.combine``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from operators.errors import OperatorParamsError, did_you_mean
from operators.registry import OperatorRegistry, OperatorSpec
from pipelines.errors import (
    CollectWithoutMapError,
    GraphError,
    GraphValidationError,
    InvalidParamsError,
    UnresolvedReferenceError,
)
from pipelines.refs import Collect, Condition, Ref, parse_ref, parse_value, walk_refs
from pipelines.spec import INPUT_TYPES, GraphSpec
from pipelines.yaml_lines import Path, line_of

__all__ = ["Problems", "check_input_types", "check_params", "check_ref", "parse_when"]


class Problems:
    """The problems found in one graph file so far, and the YAML lines to point them at."""

    def __init__(self, file: str, lines: Mapping[Path, int]) -> None:
        self.file = file
        self._lines = dict(lines)
        self.errors: list[GraphError] = []

    def at(self, *path: str | int) -> int | None:
        """The line of ``path`` (``"nodes", "probe", "op"``), or of its nearest ancestor."""
        return line_of(self._lines, tuple(path))

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Record a :class:`GraphError` raised inside, and go on with the next check."""
        try:
            yield
        except GraphError as exc:
            self.errors.append(exc.located(self.file, None))

    def raise_any(self) -> None:
        """Raise what was found: the one error itself, or one listing all of them."""
        if self.errors:
            raise GraphError.combine(self.errors)


_COMPARISON = re.compile(r"^(\$\S+)\s*(==|!=)\s*(\S+)$")


def parse_when(name: str, raw: str | list[str] | None, spec: GraphSpec,
               problems: Problems) -> tuple[Condition, ...]:
    """A node's ``when:``: payload (or job) references, each optionally negated with ``not``, or compared with
    a value (``$payload.task == translate``, ``!=``); a value an enum input cannot take is an error here."""
    if raw is None:
        return ()
    line = problems.at("nodes", name, "when")
    conditions = []
    for text in [raw] if isinstance(raw, str) else raw:
        text = text.strip()
        negated = text.startswith("not ")
        compared = _COMPARISON.match(text)
        with problems.check():
            try:
                ref = parse_ref(compared.group(1) if compared else text[4:].strip() if negated else text)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"node '{name}', when: {exc}", line=line) from None
            if ref.scope not in ("payload", "job"):
                raise UnresolvedReferenceError(f"node '{name}', when: a condition is known when the job starts: use "
                                               f"$payload.<input> or $job.<field>, not '{ref.text}'", line=line)
            check_ref(ref, spec, (), node_name=name, is_mapped=False, line=line)
            if compared is None:
                conditions.append(Condition(negated, ref))
                continue
            value = compared.group(3)
            choices = spec.inputs[ref.name].enum if ref.scope == "payload" and ref.name in spec.inputs else None
            if choices and value not in [str(c) for c in choices]:
                raise UnresolvedReferenceError(
                    f"node '{name}', when: {ref.text} is never '{value}' (its values: {', '.join(map(str, choices))})"
                    + did_you_mean(value, [str(c) for c in choices]), line=line)
            conditions.append(Condition(compared.group(2) == "!=", ref, value))
    return tuple(conditions)


def check_input_types(spec: GraphSpec, registry: OperatorRegistry, problems: Problems) -> dict[str, Any]:
    """Every input's type is built in or a registered payload model; ``merge_from`` names an object input.

    Returns the payload model class of each input whose type is one.
    """
    models: dict[str, Any] = {}
    known = [*INPUT_TYPES, *registry.model_names()]
    for name, item in spec.inputs.items():
        with problems.check():
            if item.type in INPUT_TYPES:
                if item.merge_from is not None:
                    raise GraphValidationError(f"input '{name}': merge_from applies to payload models only, not "
                                               f"'{item.type}'", line=problems.at("inputs", name))
                continue
            model = registry.model(item.type)
            if model is None:
                raise GraphValidationError(
                    f"input '{name}': unknown type '{item.type}'.{did_you_mean(item.type, known)} "
                    f"Types: {', '.join(known)}", line=problems.at("inputs", name, "type"))
            source = spec.inputs.get(item.merge_from) if item.merge_from else None
            if item.merge_from is not None and (source is None or source.type != "object"):
                raise GraphValidationError(f"input '{name}': merge_from must name an input of type object, not "
                                           f"'{item.merge_from}'.{did_you_mean(item.merge_from, spec.inputs)}",
                                           line=problems.at("inputs", name))
            models[name] = model
    return models


def check_params(name: str, op: OperatorSpec, raw: dict[str, Any], spec: GraphSpec,
                 line: int | None) -> tuple[Any, dict[str, Any] | None]:
    """Validate params; ``$payload.x`` values are checked with the input's default, and again per job.

    Returns the params model (None when it can only be built per job) and the parsed
    template (None when no value refers to the payload).
    """
    try:
        parsed = {key: parse_value(value) for key, value in raw.items()}
    except ValueError as exc:
        raise InvalidParamsError(f"node '{name}', params: {exc}", line=line) from None
    if not walk_refs(parsed):
        try:
            return op.parse_params(raw), None
        except OperatorParamsError as exc:
            raise InvalidParamsError(f"node '{name}': {exc}", line=line) from None
    substituted, per_job = _substitute_defaults(name, parsed, raw, spec, line)
    try:
        checked = op.parse_params(substituted)
    except OperatorParamsError as exc:
        problems = [(where, msg) for where, msg in exc.problems if where.split(".")[0] not in per_job]
        if problems:
            listed = "; ".join(f"{where}: {msg}" for where, msg in problems)
            raise InvalidParamsError(f"node '{name}': invalid params for operator '{op.name}': {listed}",
                                     line=line) from None
        checked = None
    return checked, parsed


def _substitute_defaults(name: str, parsed: dict[str, Any], raw: dict[str, Any], spec: GraphSpec,
                         line: int | None) -> tuple[dict[str, Any], set[str]]:
    """Params with each ``$payload.x`` replaced by the input's default, and the keys known only per job."""
    substituted: dict[str, Any] = {}
    per_job: set[str] = set()
    for key, value in parsed.items():
        found = walk_refs(value)
        if not found:
            substituted[key] = raw[key]
            continue
        ref = found[0]
        if isinstance(ref, Collect) or ref.scope != "payload" or value is not ref:
            raise InvalidParamsError(f"node '{name}', params.{key}: params may refer only to a whole "
                                     "$payload.<input>", line=line)
        if ref.name not in spec.inputs:
            raise UnresolvedReferenceError(f"node '{name}', params.{key}: '{ref.text}' names no declared input."
                                           f"{did_you_mean(ref.name, spec.inputs)}", line=line)
        default = spec.inputs[ref.name].default
        if default is not None and not ref.path:
            substituted[key] = default
        else:
            per_job.add(key)  # a required input: known only per job, checked at POST
    return substituted, per_job


def check_ref(ref: Ref | Collect, spec: GraphSpec, mapped: Iterable[str], *, node_name: str, is_mapped: bool,
              line: int | None) -> set[str]:
    """Check one reference of a node (or an output); return the node names it depends on."""
    if isinstance(ref, Collect):
        target = ref.ref
        if target.name not in spec.nodes:
            raise UnresolvedReferenceError(f"{_who(node_name)}: collect refers to unknown node '{target.name}'."
                                           f"{did_you_mean(target.name, spec.nodes)}", line=line)
        if spec.nodes[target.name].map is None:
            raise CollectWithoutMapError(f"{_who(node_name)}: collect needs a mapped node, but '{target.name}' has "
                                         f"no map; refer to it as ${target.name} instead", line=line)
        return {target.name}
    if ref.scope == "payload":
        if ref.name not in spec.inputs:
            raise UnresolvedReferenceError(f"{_who(node_name)}: '{ref.text}' names no declared input."
                                           f"{did_you_mean(ref.name, spec.inputs)}", line=line)
        return set()
    if ref.scope == "item":
        if not is_mapped:
            raise CollectWithoutMapError(f"{_who(node_name)}: $item is only defined in a node with map", line=line)
        return set()
    if ref.scope == "job":
        if ref.name not in ("id", "priority", "attempt", "type"):
            raise UnresolvedReferenceError(f"{_who(node_name)}: '{ref.text}': $job has id, priority, attempt and "
                                           "type", line=line)
        return set()
    if ref.scope == "outputs":
        raise UnresolvedReferenceError(f"{_who(node_name)}: $outputs is only defined in 'then'", line=line)
    if ref.name not in spec.nodes:
        raise UnresolvedReferenceError(f"{_who(node_name)}: '{ref.text}' names no node or input."
                                       f"{did_you_mean(ref.name, spec.nodes)}", line=line)
    if ref.name in set(mapped):
        raise CollectWithoutMapError(f"{_who(node_name)}: '{ref.name}' is mapped; use {{collect: ${ref.name}}} for "
                                     "its ordered results", line=line)
    return {ref.name}


def _who(node_name: str) -> str:
    return node_name if node_name.startswith("output") else f"node '{node_name}'"
