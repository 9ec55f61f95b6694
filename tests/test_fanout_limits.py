"""Bounded fan-out (``max_tasks``) and results that stay on the workers, on the real cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from litestar.testing import TestClient

from pipelines import GraphLoadError, GraphValidationError, parse_graph
from scheduler.settings import Settings
from server.app import create_app
from tests.conftest import wait_for


def _keys_seen(cluster: LocalCluster, job_id: str) -> set[str]:
    """Every task key of the job the scheduler has moved through a state (its transition log)."""
    with Client(cluster.scheduler_address, timeout=10) as client:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log])
    return {k for k in keys if job_id in k}


def _run(client: TestClient[Any], job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/jobs/?job_type={job_type}", json=payload)
    assert response.status_code == 202, response.text
    return wait_for(client, response.json()["id"], timeout=60)


def test_a_fan_out_past_its_limit_fails_before_any_task_starts(client: TestClient[Any],
                                                                dask_cluster: LocalCluster) -> None:
    """Two hours in 1 s chunks: 7200 tasks, past MAX_TASKS_PER_NODE (1000). The job fails, naming the node,
    the count, the limit and what to change, and not one of the 7200 reaches the scheduler."""
    done = _run(client, "fanout_limit", {"duration": 7200, "chunk_seconds": 1})
    assert done["status"] == "failed"
    assert done["error_message"] == (
        "node 'transcode' would start 7200 tasks (one per item of $split), more than its max_tasks 1000: make that "
        "list shorter (for chunks, raise chunk_seconds) or raise max_tasks (the node's max_tasks:, the graph's "
        "max_tasks_per_node: or MAX_TASKS_PER_NODE)")
    seen = _keys_seen(dask_cluster, done["id"])
    assert f"split-{done['id']}" in seen  # the log does record this job's tasks
    assert not [k for k in seen if k.startswith("transcode-")], sorted(seen)[:5]


def test_a_node_limit_overrides_the_setting_and_a_fan_out_within_it_runs(client: TestClient[Any]) -> None:
    done = _run(client, "fanout_limit", {"duration": 20, "chunk_seconds": 1})
    assert done["status"] == "completed", done["error_message"]
    assert done["result_payload"]["outputs"]["chunks"] == list(range(20))
    done = _run(client, "fanout_limit", {"duration": 101, "chunk_seconds": 1, "thumbs": True})
    assert done["status"] == "failed"
    assert done["error_message"].startswith("node 'thumbs' would start 101 tasks (one per item of $split), more "
                                            "than its max_tasks 100: "), done["error_message"]


def test_the_setting_bounds_nodes_without_their_own_limit(settings: Settings) -> None:
    with TestClient(app=create_app(settings.model_copy(update={"max_tasks_per_node": 10})), timeout=30) as client:
        done = _run(client, "fanout_limit", {"duration": 11, "chunk_seconds": 1})
    assert done["status"] == "failed"
    assert done["error_message"].startswith("node 'transcode' would start 11 tasks"), done["error_message"]
    assert "more than its max_tasks 10: " in done["error_message"]


def test_a_payload_list_past_the_limit_is_a_422_at_submission(client: TestClient[Any]) -> None:
    response = client.post("/jobs/?job_type=fanout_limit", json={"duration": 3, "frames": [1, 2, 3, 4]})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": ["body", "frames"], "type": "too_long",
                                          "msg": "4 items, but node 'frame' starts one task per item, at most 3 "
                                                 "(its max_tasks)"}]
    done = _run(client, "fanout_limit", {"duration": 3, "frames": [1, 2, 3]})
    assert done["status"] == "completed", done["error_message"]
    assert done["result_payload"]["outputs"]["frames"] == [1, 2, 3]


def test_a_big_intermediate_result_never_reaches_the_dispatcher(client: TestClient[Any], media_root: Path) -> None:
    """``big`` (8 MiB) is consumed only by ``size``: it goes worker to worker. The dispatcher (this process)
    fetches the list ``each`` maps over, which shows that it would notice a result it received."""
    done = _run(client, "big_intermediate", {"megabytes": 8})
    assert done["status"] == "completed", done["error_message"]
    assert done["result_payload"]["outputs"] == {"size": 8 * 1024 * 1024, "sizes": [1048, 1048]}
    arrivals = [line.split() for line in (media_root / f"{done['id']}-arrivals").read_text().splitlines()]
    here = str(os.getpid())
    assert [here, "listed", "1048"] in arrivals, arrivals
    assert [a for a in arrivals if a[0] == here and a[1] == "big"] == [], arrivals


@pytest.mark.parametrize(("node", "error", "message"), [
    ("{op: util.echo, map: $payload.x, max_tasks: 0}", GraphLoadError,
     "nodes.a.max_tasks: Input should be greater than or equal to 1"),
    ("{op: util.echo, map: $payload.x, max_tasks: many}", GraphLoadError,
     "nodes.a.max_tasks: Input should be a valid integer"),
    ("{op: util.echo, map: $payload.x, max_tasks: 2.5}", GraphLoadError,
     "nodes.a.max_tasks: Input should be a valid integer"),
    ("{op: util.echo, max_tasks: 5}", GraphValidationError,
     "node 'a': max_tasks bounds a fan-out, but the node has no map"),
])
def test_max_tasks_is_checked_at_load(node: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        parse_graph(f"name: g\ninputs: {{x: {{type: list, default: []}}}}\nnodes:\n  a: {node}\n", file="g.yaml")
    assert str(caught.value) == f"g.yaml:4: {message}"


def test_the_graph_sets_every_node_limit_and_a_node_its_own() -> None:
    graph = parse_graph("name: g\nmax_tasks_per_node: 7\ninputs: {x: {type: list, default: []}}\nnodes:\n"
                        "  a: {op: util.echo, map: $payload.x, inputs: {value: $item}}\n"
                        "  b: {op: util.echo, map: $payload.x, max_tasks: 70, inputs: {value: $item}}\n")
    assert {name: node.max_tasks for name, node in graph.nodes.items()} == {"a": 7, "b": 70}
