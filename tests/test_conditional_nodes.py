"""Node ``when:``: a node runs only if its conditions hold; a skipped node's result is null."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from pipelines.errors import UnresolvedReferenceError
from pipelines.loader import parse_graph
from tests.conftest import wait_for


def _outputs(client: TestClient[Any], payload: dict[str, Any]) -> dict[str, Any]:
    job = client.post("/jobs/?job_type=conditional", json=payload).json()
    done = wait_for(client, job["id"], timeout=30)
    assert done["status"] == "completed", done["error_message"]
    return done["result_payload"]


def test_nodes_run_when_their_conditions_hold(client: TestClient[Any]) -> None:
    result = _outputs(client, {})
    assert result["outputs"]["result"] == {"made": "made", "each": [1, 2], "given": ""}


def test_skipped_nodes_give_null_and_empty_fan_outs(client: TestClient[Any]) -> None:
    result = _outputs(client, {"given": "x"})
    assert result["outputs"] == {"result": {"made": None, "each": [], "given": "x"}, "make": None, "fancy": None,
                                 "not_plain": None}
    log = [e["message"] for e in result["log"]]
    assert "make: skipped (not $payload.given)" in log
    assert result["progress"] == 1.0


def test_when_takes_payload_references_only() -> None:
    text = "name: g\nnodes:\n  a: {op: util.echo}\n  b:\n    op: util.echo\n    when: $a\n"
    with pytest.raises(UnresolvedReferenceError, match="known when the job starts"):
        parse_graph(text)


def test_when_compares_an_input_with_a_value(client: TestClient[Any]) -> None:
    fancy = _outputs(client, {"mode": "fancy"})
    assert (fancy["outputs"]["fancy"], fancy["outputs"]["not_plain"]) == ("fancy", "not plain")
    plain = _outputs(client, {})
    assert (plain["outputs"]["fancy"], plain["outputs"]["not_plain"]) == (None, None)
    assert "fancy: skipped ($payload.mode == fancy)" in [e["message"] for e in plain["log"]]


def test_a_comparison_with_a_value_the_input_never_takes_is_refused_at_load() -> None:
    text = ("name: g\ninputs:\n  mode: {type: string, default: plain, enum: [plain, fancy]}\nnodes:\n"
            "  b:\n    op: util.echo\n    when: $payload.mode == fancyy\n")
    with pytest.raises(UnresolvedReferenceError, match="is never 'fancyy'.*Did you mean 'fancy'"):
        parse_graph(text)
