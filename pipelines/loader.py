"""Loading graph files: parse, check the shape, then validate everything before any job runs.

Validation covers what Kedro checks at load: unknown operators (with a "did you mean"),
params against each operator's pydantic model, inputs against each operator's signature,
unresolved references, ``collect`` without ``map``, and cycles (with networkx).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from pydantic import ValidationError

from operators.errors import OperatorParamsError, UnknownOperatorError, did_you_mean
from operators.registry import REGISTRY, OperatorRegistry
from pipelines.errors import (
    CollectWithoutMapError,
    GraphCycleError,
    GraphError,
    GraphLoadError,
    GraphValidationError,
    InvalidParamsError,
    UnknownInputError,
    UnknownOperatorInGraphError,
    UnresolvedReferenceError,
)
from pipelines.graph import Graph, Node
from pipelines.refs import Collect, Ref, parse_ref, parse_value, walk_refs
from pipelines.spec import INPUT_TYPES, GraphSpec
from pipelines.yaml_lines import line_of, load_with_lines

__all__ = ["load_graph", "load_graph_dir", "parse_graph"]


def load_graph(path: str | Path, registry: OperatorRegistry | None = None) -> Graph:
    """Load and validate one graph file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphLoadError(f"cannot read graph file: {exc.strerror}", file=str(path)) from None
    graph = parse_graph(text, file=str(path), registry=registry)
    if graph.spec.name != path.stem:
        raise GraphValidationError(
            f"graph name '{graph.spec.name}' must match its file name '{path.stem}' (the job_type)",
            file=str(path),
            line=1,
        )
    return graph


def load_graph_dir(folder: str | Path, registry: OperatorRegistry | None = None) -> dict[str, Graph]:
    """Load every ``*.yaml`` in ``folder``; the first broken file raises."""
    graphs: dict[str, Graph] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        graph = load_graph(path, registry)
        graphs[graph.name] = graph
    return graphs


def parse_graph(text: str, *, file: str = "<graph>", registry: OperatorRegistry | None = None) -> Graph:
    """Parse and validate graph YAML text."""
    if registry is None:
        import operators  # noqa: F401  (registers the built-in operators)

        registry = REGISTRY
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise GraphLoadError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise GraphLoadError("a graph file must be a mapping with name, inputs, nodes and outputs", file=file, line=1)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        where = ".".join(map(str, loc)) or "(graph)"
        raise GraphLoadError(f"{where}: {err['msg']}", file=file, line=line_of(lines, loc)) from None
    try:
        return _validate(spec, registry, file, lines)
    except GraphError as exc:
        raise exc.located(file, None) from None


def _validate(spec: GraphSpec, registry: OperatorRegistry, file: str, lines: Mapping[Any, int]) -> Graph:
    def at(*path: str | int) -> int | None:
        return line_of(dict(lines), tuple(path))

    input_models = _check_input_types(spec, registry, file, at)
    mapped = {name for name, node in spec.nodes.items() if node.map is not None}
    built: dict[str, dict[str, Any]] = {}
    dag = nx.DiGraph()
    dag.add_nodes_from(spec.nodes)

    for name, node in spec.nodes.items():
        try:
            op = registry.get(node.op)
        except UnknownOperatorError as exc:
            raise UnknownOperatorInGraphError(f"node '{name}': {exc}", file=file, line=at("nodes", name, "op")) from None
        params, params_template = _check_params(name, op, node.params, spec, file, at("nodes", name, "params"))

        unknown = set(node.inputs) - op.inputs
        if unknown and not op.accepts_any_input:
            bad = sorted(unknown)[0]
            raise UnknownInputError(
                f"node '{name}': operator '{op.name}' takes no input '{bad}'.{did_you_mean(bad, op.inputs)}"
                f" It takes: {', '.join(sorted(op.inputs)) or 'nothing'}",
                file=file,
                line=at("nodes", name, "inputs", bad),
            )
        missing = op.required_inputs - set(node.inputs)
        if missing:
            raise UnknownInputError(
                f"node '{name}': operator '{op.name}' needs input '{sorted(missing)[0]}'",
                file=file,
                line=at("nodes", name, "inputs") or at("nodes", name),
            )

        parsed_inputs: dict[str, Any] = {}
        deps: set[str] = set()
        for key, raw in node.inputs.items():
            line = at("nodes", name, "inputs", key)
            try:
                parsed = parse_value(raw)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"node '{name}', input '{key}': {exc}", file=file, line=line) from None
            for ref in walk_refs(parsed):
                deps |= _check_ref(ref, spec, mapped, node_name=name, is_mapped=node.map is not None, file=file, line=line)
            parsed_inputs[key] = parsed

        map_ref: Ref | None = None
        if node.map is not None:
            line = at("nodes", name, "map")
            try:
                map_ref = parse_ref(node.map)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"node '{name}', map: {exc}", file=file, line=line) from None
            if map_ref.scope not in ("node", "payload"):
                raise UnresolvedReferenceError(
                    f"node '{name}': map takes $<node> or $payload.<list input>, not '{map_ref.text}'", file=file, line=line
                )
            if map_ref.scope == "payload":
                _check_ref(map_ref, spec, mapped, node_name=name, is_mapped=False, file=file, line=line)
            else:
                if map_ref.name not in spec.nodes:
                    raise UnresolvedReferenceError(
                        f"node '{name}': map refers to unknown node '{map_ref.name}'."
                        f"{did_you_mean(map_ref.name, spec.nodes)}",
                        file=file,
                        line=line,
                    )
                if map_ref.path and map_ref.name in mapped:
                    raise UnresolvedReferenceError(
                        f"node '{name}': map over mapped node '{map_ref.name}' takes no field path", file=file, line=line
                    )
                deps.add(map_ref.name)
        else:
            for ref in walk_refs(parsed_inputs):
                if isinstance(ref, Ref) and ref.scope == "item":
                    raise CollectWithoutMapError(
                        f"node '{name}' uses $item but has no map", file=file, line=at("nodes", name, "inputs")
                    )

        for dep in deps:
            dag.add_edge(dep, name)
        built[name] = {
            "op": op,
            "params": params,
            "inputs": parsed_inputs,
            "map": map_ref,
            "deps": frozenset(deps),
            "weight": node.weight if node.weight is not None else op.weight,
            "params_template": params_template,
        }

    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        raise GraphCycleError(f"nodes form a cycle: {' -> '.join(names)}", file=file, line=at("nodes", names[0]))

    outputs: dict[str, Any] = {}
    for key, raw in spec.outputs.items():
        line = at("outputs", key)
        try:
            parsed = parse_value(raw)
        except ValueError as exc:
            raise UnresolvedReferenceError(f"output '{key}': {exc}", file=file, line=line) from None
        for ref in walk_refs(parsed):
            target = ref.ref if isinstance(ref, Collect) else ref
            if target.scope == "item":
                raise UnresolvedReferenceError(f"output '{key}': $item is only defined inside a mapped node", file=file, line=line)
            # Outputs may name a mapped node directly: it becomes the ordered list.
            _check_ref(ref, spec, set(), node_name=f"output '{key}'", is_mapped=False, file=file, line=line)
        outputs[key] = parsed

    for i, chain in enumerate(spec.then):
        fields = [("when", chain.when), ("priority", chain.priority), ("payload", chain.payload),
                  ("clip_version_id", chain.clip_version_id)]
        if chain.for_each is not None:
            fields.append(("for_each", chain.for_each))
        for field_name, raw in fields:
            line = at("then", i, field_name) or at("then", i)
            try:
                parsed = parse_value(raw)
            except ValueError as exc:
                raise UnresolvedReferenceError(f"then[{i}].{field_name}: {exc}", file=file, line=line) from None
            for ref in walk_refs(parsed):
                target = ref.ref if isinstance(ref, Collect) else ref
                if target.scope == "outputs" and target.name not in spec.outputs:
                    raise UnresolvedReferenceError(
                        f"then[{i}].{field_name}: unknown output '{target.name}'.{did_you_mean(target.name, spec.outputs)}",
                        file=file,
                        line=line,
                    )
                if target.scope == "payload" and target.name not in spec.inputs:
                    raise UnresolvedReferenceError(
                        f"then[{i}].{field_name}: unknown input '{target.name}'.{did_you_mean(target.name, spec.inputs)}",
                        file=file,
                        line=line,
                    )
                if target.scope == "item" and chain.for_each is not None and field_name != "for_each":
                    continue
                if target.scope in ("node", "item"):
                    raise UnresolvedReferenceError(
                        f"then[{i}].{field_name}: chained jobs see $payload, $outputs and $job, not '{target.text}'",
                        file=file,
                        line=line,
                    )

    order = list(nx.lexicographical_topological_sort(dag))
    nodes = {
        name: Node(
            name=name,
            retries=spec.nodes[name].retries,
            resources=dict(spec.nodes[name].resources),
            timeout=spec.nodes[name].timeout,
            when=_parse_when(name, spec, file, at),
            **built[name],
        )
        for name in order
    }
    return Graph(spec=spec, file=file, nodes=nodes, outputs=outputs, chains=tuple(spec.then), input_models=input_models)


def _parse_when(name: str, spec: GraphSpec, file: str, at: Any) -> tuple[tuple[bool, Ref], ...]:
    """A node's ``when:``: payload (or job) references, each optionally negated with ``not``."""
    raw = spec.nodes[name].when
    if raw is None:
        return ()
    conditions = []
    for text in [raw] if isinstance(raw, str) else raw:
        negated = text.startswith("not ")
        try:
            ref = parse_ref(text[4:].strip() if negated else text.strip())
        except ValueError as exc:
            raise UnresolvedReferenceError(f"node '{name}', when: {exc}", file=file, line=at("nodes", name, "when")) from None
        if ref.scope not in ("payload", "job"):
            raise UnresolvedReferenceError(f"node '{name}', when: a condition is known when the job starts: use "
                                           f"$payload.<input> or $job.<field>, not '{ref.text}'",
                                           file=file, line=at("nodes", name, "when"))
        _check_ref(ref, spec, set(), node_name=name, is_mapped=False, file=file, line=at("nodes", name, "when"))
        conditions.append((negated, ref))
    return tuple(conditions)


def _check_input_types(spec: GraphSpec, registry: OperatorRegistry, file: str, at: Any) -> dict[str, Any]:
    """Every input's type is built in or a registered payload model; ``merge_from`` names an object input."""
    models: dict[str, Any] = {}
    known = [*INPUT_TYPES, *registry.model_names()]
    for name, item in spec.inputs.items():
        if item.type in INPUT_TYPES:
            if item.merge_from is not None:
                raise GraphValidationError(f"input '{name}': merge_from applies to payload models only, not "
                                           f"'{item.type}'", file=file, line=at("inputs", name))
            continue
        model = registry.model(item.type)
        if model is None:
            raise GraphValidationError(
                f"input '{name}': unknown type '{item.type}'.{did_you_mean(item.type, known)} "
                f"Types: {', '.join(known)}", file=file, line=at("inputs", name, "type") or at("inputs", name))
        source = spec.inputs.get(item.merge_from) if item.merge_from else None
        if item.merge_from is not None and (source is None or source.type != "object"):
            raise GraphValidationError(f"input '{name}': merge_from must name an input of type object, not "
                                       f"'{item.merge_from}'.{did_you_mean(item.merge_from, spec.inputs)}",
                                       file=file, line=at("inputs", name))
        models[name] = model
    return models


def _check_params(name: str, op: Any, raw: dict[str, Any], spec: GraphSpec, file: str,
                  line: int | None) -> tuple[Any, dict[str, Any] | None]:
    """Validate params; ``$payload.x`` values are checked with the input's default, and again per job."""
    try:
        parsed = {key: parse_value(value) for key, value in raw.items()}
    except ValueError as exc:
        raise InvalidParamsError(f"node '{name}', params: {exc}", file=file, line=line) from None
    refs = [r for r in walk_refs(parsed)]
    if not refs:
        try:
            return op.parse_params(raw), None
        except OperatorParamsError as exc:
            raise InvalidParamsError(f"node '{name}': {exc}", file=file, line=line) from None
    substituted: dict[str, Any] = {}
    unknown: set[str] = set()
    for key, value in parsed.items():
        found = walk_refs(value)
        if not found:
            substituted[key] = raw[key]
            continue
        ref = found[0]
        if isinstance(ref, Collect) or ref.scope != "payload" or value is not ref:
            raise InvalidParamsError(
                f"node '{name}', params.{key}: params may refer only to a whole $payload.<input>", file=file, line=line
            )
        if ref.name not in spec.inputs:
            raise UnresolvedReferenceError(
                f"node '{name}', params.{key}: '{ref.text}' names no declared input.{did_you_mean(ref.name, spec.inputs)}",
                file=file,
                line=line,
            )
        default = spec.inputs[ref.name].default
        if default is not None and not ref.path:
            substituted[key] = default
        else:
            unknown.add(key)  # a required input: known only per job, checked at POST
    try:
        checked = op.parse_params(substituted)
    except OperatorParamsError as exc:
        problems = [(where, msg) for where, msg in exc.problems if where.split(".")[0] not in unknown]
        if problems:
            listed = "; ".join(f"{where}: {msg}" for where, msg in problems)
            raise InvalidParamsError(f"node '{name}': invalid params for operator '{op.name}': {listed}",
                                     file=file, line=line) from None
        checked = None
    return checked, parsed


def _check_ref(
    ref: Ref | Collect,
    spec: GraphSpec,
    mapped: Iterable[str],
    *,
    node_name: str,
    is_mapped: bool,
    file: str,
    line: int | None,
) -> set[str]:
    """Check one reference; return the node names it depends on."""
    mapped = set(mapped)
    if isinstance(ref, Collect):
        target = ref.ref
        if target.name not in spec.nodes:
            raise UnresolvedReferenceError(
                f"{_who(node_name)}: collect refers to unknown node '{target.name}'.{did_you_mean(target.name, spec.nodes)}",
                file=file,
                line=line,
            )
        if spec.nodes[target.name].map is None:
            raise CollectWithoutMapError(
                f"{_who(node_name)}: collect needs a mapped node, but '{target.name}' has no map; "
                f"refer to it as ${target.name} instead",
                file=file,
                line=line,
            )
        return {target.name}
    if ref.scope == "payload":
        if ref.name not in spec.inputs:
            raise UnresolvedReferenceError(
                f"{_who(node_name)}: '{ref.text}' names no declared input.{did_you_mean(ref.name, spec.inputs)}",
                file=file,
                line=line,
            )
        return set()
    if ref.scope == "item":
        if not is_mapped:
            raise CollectWithoutMapError(f"{_who(node_name)}: $item is only defined in a node with map", file=file, line=line)
        return set()
    if ref.scope == "job":
        if ref.name not in ("id", "priority", "attempt", "type"):
            raise UnresolvedReferenceError(
                f"{_who(node_name)}: '{ref.text}': $job has id, priority, attempt and type", file=file, line=line
            )
        return set()
    if ref.scope == "outputs":
        raise UnresolvedReferenceError(f"{_who(node_name)}: $outputs is only defined in 'then'", file=file, line=line)
    if ref.name not in spec.nodes:
        raise UnresolvedReferenceError(
            f"{_who(node_name)}: '{ref.text}' names no node or input.{did_you_mean(ref.name, spec.nodes)}",
            file=file,
            line=line,
        )
    if ref.name in mapped:
        raise CollectWithoutMapError(
            f"{_who(node_name)}: '{ref.name}' is mapped; use {{collect: ${ref.name}}} for its ordered results",
            file=file,
            line=line,
        )
    return {ref.name}


def _who(node_name: str) -> str:
    return node_name if node_name.startswith("output") else f"node '{node_name}'"
