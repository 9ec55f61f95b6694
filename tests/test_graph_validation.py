"""Every graph loads; every kind of broken graph is refused at load with file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.registry import REGISTRY
from pipelines import (
    CollectWithoutMapError,
    GraphCycleError,
    GraphLoadError,
    GraphValidationError,
    InvalidParamsError,
    UnknownInputError,
    UnknownOperatorInGraphError,
    UnresolvedReferenceError,
    bind_payload,
    load_graph,
    parse_graph,
)
from pipelines.errors import PayloadError
from scheduler.settings import Settings
from server.app import create_app
from tests import ops_testing  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
GRAPH_FILES = sorted((ROOT / "graphs").glob("*.yaml")) + sorted((ROOT / "tests" / "graphs").glob("*.yaml"))


@pytest.mark.parametrize("path", GRAPH_FILES, ids=lambda p: p.name)
def test_every_graph_loads(path: Path) -> None:
    graph = load_graph(path)
    assert graph.name == path.stem
    assert graph.nodes, "a graph needs nodes"
    for node in graph.nodes.values():
        assert node.op.name in REGISTRY


def test_project_graphs_include_ingest() -> None:
    names = {p.stem for p in GRAPH_FILES}
    assert "ingest" in names


BROKEN = [
    ("unknown operator", "name: g\nnodes:\n  a:\n    op: media.prob\n", UnknownOperatorInGraphError, 4,
     "Did you mean 'media.probe'?"),
    ("bad params", "name: g\nnodes:\n  a:\n    op: util.sleep\n    params: {seconds: -1}\n", InvalidParamsError, 5,
     "seconds"),
    ("unknown params field", "name: g\nnodes:\n  a:\n    op: util.sleep\n    params: {second: 1}\n",
     InvalidParamsError, 5, "second"),
    ("unresolved node", "name: g\nnodes:\n  a:\n    op: util.echo\n    inputs: {value: $prob}\n  probe: {op: util.echo}\n",
     UnresolvedReferenceError, 5, "Did you mean 'probe'?"),
    ("unresolved input", "name: g\ninputs: {x: {type: string}}\nnodes:\n  a:\n    op: util.echo\n    inputs: {value: $payload.y}\n",
     UnresolvedReferenceError, 6, "names no declared input"),
    ("cycle", "name: g\nnodes:\n  a: {op: util.echo, inputs: {value: $b}}\n  b: {op: util.echo, inputs: {value: $a}}\n",
     GraphCycleError, 3, "cycle"),
    ("collect without map", "name: g\nnodes:\n  a: {op: util.echo}\n  b:\n    op: util.echo\n    inputs: {value: {collect: $a}}\n",
     CollectWithoutMapError, 6, "has no map"),
    ("mapped node without collect", "name: g\nnodes:\n  a: {op: util.echo}\n  m: {op: util.echo, map: $a, inputs: {value: $item}}\n"
     "  b:\n    op: util.echo\n    inputs: {value: $m}\n", CollectWithoutMapError, 7, "collect"),
    ("item without map", "name: g\nnodes:\n  a:\n    op: util.echo\n    inputs: {value: $item}\n", CollectWithoutMapError, 5,
     "$item"),
    ("unknown operator input", "name: g\nnodes:\n  a:\n    op: util.echo\n    inputs: {valeu: 1}\n", UnknownInputError, 5,
     "Did you mean 'value'?"),
    ("missing operator input", "name: g\nnodes:\n  a:\n    op: util.pick\n    params: {field: x}\n", UnknownInputError, 3,
     "needs input 'value'"),
    ("bad yaml", "name: g\nnodes:\n  a: {op: util.echo\n", GraphLoadError, 4, "invalid YAML"),
    ("bad shape", "name: g\nnodes:\n  a:\n    op: util.echo\n    retries: many\n", GraphLoadError, 5, "retries"),
    ("bad input type", "name: g\ninputs:\n  x: {type: strng}\nnodes:\n  a: {op: util.echo}\n", GraphValidationError, 3, "Did you mean 'string'"),
    ("no nodes", "name: g\nnodes: {}\n", GraphLoadError, 2, "nodes"),
    ("bad output", "name: g\nnodes:\n  a: {op: util.echo}\noutputs:\n  r: $b\n", UnresolvedReferenceError, 5, "names no node"),
    ("bad chain", "name: g\nnodes:\n  a: {op: util.echo}\nthen:\n  - job_type: x\n    payload: {y: $outputs.nope}\n",
     UnresolvedReferenceError, 6, "unknown output"),
]


@pytest.mark.parametrize(("case", "text", "error", "line", "fragment"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_graphs_are_refused(case: str, text: str, error: type[Exception], line: int, fragment: str) -> None:
    with pytest.raises(error) as caught:
        parse_graph(text, file="g.yaml")
    assert caught.value.line == line, str(caught.value)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"g.yaml:{line}: ")


def test_graph_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("name: g\nnodes:\n  a: {op: util.echo}\n")
    with pytest.raises(GraphValidationError, match="must match its file name 'other'"):
        load_graph(path)


def test_broken_graph_stops_startup(tmp_path: Path) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "bad.yaml").write_text("name: bad\nnodes:\n  a:\n    op: media.transcod\n")
    with pytest.raises(UnknownOperatorInGraphError) as caught:
        create_app(Settings(graphs_dir=graphs, data_dir=tmp_path))
    assert f"{graphs / 'bad.yaml'}:4:" in str(caught.value)


def test_payload_binding_types_defaults_and_extras() -> None:
    graph = parse_graph(
        "name: g\ninputs:\n  n: {type: integer, minimum: 1}\n  tags: {type: 'list[string]', default: []}\n"
        "  mode: {type: string, enum: [fast, slow], default: fast}\n"
        "nodes:\n  a: {op: util.echo, inputs: {value: $payload.n}}\n"
    )
    bound = bind_payload(graph, {"n": 3, "extra": {"kept": True}})
    assert bound.values == {"n": 3, "tags": [], "mode": "fast"}
    assert bound.payload["extra"] == {"kept": True}
    for payload, loc in (({}, ["body", "n"]), ({"n": "3"}, ["body", "n"]), ({"n": 0}, ["body", "n"]),
                         ({"n": 1, "tags": [1]}, ["body", "tags", "0"]), ({"n": 1, "mode": "medium"}, ["body", "mode"])):
        with pytest.raises(PayloadError) as caught:
            bind_payload(graph, payload)
        assert caught.value.errors[0]["loc"] == loc, payload


def test_every_problem_of_a_graph_is_reported_at_once() -> None:
    """One load lists every mistake, in line order, each with its node or field and a "did you mean"."""
    text = (
        "name: g\n"
        "inputs:\n"
        "  items: {type: 'list[int]', default: [1, 2]}\n"
        "nodes:\n"
        "  probe: {op: media.prob}\n"                                   # 5: unknown operator
        "  each:\n"
        "    op: util.echo\n"
        "    map: $payload.itmes\n"                                     # 8: unknown input
        "    inputs: {value: $item, valeu: 1}\n"                        # 9: unknown operator input
        "  tail:\n"
        "    op: util.sleep\n"
        "    params: {second: 1}\n"                                     # 12: unknown params field
        "    inputs: {value: $each}\n"                                  # 13: mapped node without collect
        "outputs:\n"
        "  r: $tial\n"                                                  # 15: unresolved node
    )
    with pytest.raises(GraphValidationError) as caught:
        parse_graph(text, file="g.yaml")
    assert str(caught.value).splitlines() == [
        "g.yaml:5: node 'probe': Unknown operator 'media.prob'. Did you mean 'media.probe'?",
        "g.yaml:8: node 'each': '$payload.itmes' names no declared input. Did you mean 'items'?",
        "g.yaml:9: node 'each': operator 'util.echo' takes no input 'valeu'. Did you mean 'value'? It takes: value",
        "g.yaml:12: node 'tail': invalid params for operator 'util.sleep': second: Extra inputs are not permitted",
        "g.yaml:13: node 'tail': 'each' is mapped; use {collect: $each} for its ordered results",
        "g.yaml:15: output 'r': '$tial' names no node or input. Did you mean 'tail'?",
    ]
    kinds = [type(e) for e in caught.value.errors]
    assert kinds == [UnknownOperatorInGraphError, UnresolvedReferenceError, UnknownInputError, InvalidParamsError,
                     CollectWithoutMapError, UnresolvedReferenceError]
    assert caught.value.line == 5
    assert caught.value.reason.startswith("6 problems: line 5: node 'probe': Unknown operator")


def test_every_shape_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("name: g\nnodes:\n  a:\n    op: util.echo\n    retries: many\n  b: {op: util.echo, weight: 0}\n")
    with pytest.raises(GraphLoadError) as caught:
        load_graph(path)
    assert str(caught.value).splitlines() == [
        f"{path}:5: nodes.a.retries: Input should be a valid integer, unable to parse string as an integer",
        f"{path}:6: nodes.b.weight: Input should be greater than 0",
    ]
    # A well-formed graph with another name than its file's: that and its other problems together.
    path.write_text("name: g\nnodes:\n  a: {op: util.slep}\n")
    with pytest.raises(GraphValidationError) as caught:
        load_graph(path)
    assert [(e.line, e.reason.split(":")[0]) for e in caught.value.errors] == [
        (1, "graph name 'g' must match its file name 'other' (the job_type)"), (3, "node 'a'")]
