"""Node timeouts: a task past its node's ``timeout:`` fails the job with a message naming both."""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import wait_for


@pytest.mark.parametrize("job_type", ["deadline", "deadline_progress"])
def test_a_task_past_its_timeout_fails_the_job(client: TestClient[Any], job_type: str) -> None:
    started = time.monotonic()
    job = client.post(f"/jobs/?job_type={job_type}", json={}).json()
    done = wait_for(client, job["id"], timeout=30)
    elapsed = time.monotonic() - started
    assert done["status"] == "failed", done
    node = "stuck" if job_type == "deadline" else "nap"
    assert done["error_message"].startswith(f"{node}: ") and "1s timeout" in done["error_message"], done
    # It fails at the limit, not when the task would have ended (2.5 s / 5 s).
    assert elapsed < (2.4 if job_type == "deadline" else 4.0), elapsed


def test_a_task_within_its_timeout_completes(client: TestClient[Any]) -> None:
    job = client.post("/jobs/?job_type=deadline", json={"seconds": 0.1}).json()
    done = wait_for(client, job["id"], timeout=30)
    assert done["status"] == "completed", done


def test_a_job_past_its_deadline_fails_naming_the_step_and_the_limit(client: TestClient[Any]) -> None:
    started = time.monotonic()
    job = client.post("/jobs/?job_type=deadline_job", json={}).json()
    done = wait_for(client, job["id"], timeout=30)
    assert done["status"] == "failed", done
    assert "ran past its 1.5s limit" in done["error_message"] and "second" in done["error_message"], done
    assert time.monotonic() - started < 4.0
    quick = wait_for(client, client.post("/jobs/?job_type=deadline_job", json={"seconds": 0.2}).json()["id"])
    assert quick["status"] == "completed", quick
