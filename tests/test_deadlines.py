"""Node timeouts: a task past its node's ``timeout:`` fails the job with a message naming both.

The tasks that overrun wait on gates the test keeps closed (``test.steps``, tests/steps_ops.py), so "it
failed at the limit, not when the task would have ended" is a fact the test sees (the task had not
ended, or stopped itself at its timeout), not a wall-clock bound.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from scheduler.settings import Settings
from tests.conftest import wait_for, wait_until
from tests.steps_ops import Gate


def _seconds(record: dict[str, Any]) -> float:
    """From the job's start to its end, by its own timestamps."""
    started, ended = (datetime.fromisoformat(record[k]) for k in ("started_at", "completed_at"))
    return (ended - started).total_seconds()


@pytest.mark.parametrize("heartbeat", [False, True], ids=["silent", "reporting progress"])
def test_a_task_past_its_timeout_fails_the_job(client: TestClient[Any], settings: Settings, heartbeat: bool) -> None:
    job = client.post("/jobs/?job_type=steps_timeout", json={"heartbeat": heartbeat}).json()
    gate = Gate(Path(settings.media_url), job["id"], "stuck")
    try:
        done = wait_for(client, job["id"], timeout=30)
        # The gate is still closed: the task cannot have finished, so the job failed at the limit.
        ended = gate.exit
        assert done["status"] == "failed", done
        # The watchdog's words, or (reporting progress) the task's own, when it stops itself first.
        message = done["error_message"]
        assert message.startswith(("The job's step 'stuck' ran past its 1s timeout",
                                   "The task ran past its 1s timeout (step 'stuck')")), done
        assert heartbeat or message.startswith("The job's step 'stuck'"), done
        assert _seconds(done) >= 1.0, done  # not before the limit either
        if heartbeat:
            # A task that reports progress stops itself at its timeout, freeing its worker.
            assert ended in (None, "TaskTimeoutError"), ended
            assert wait_until(lambda: gate.exit, 30, "the task to stop") == "TaskTimeoutError"
        else:
            assert ended is None, f"the task ended ({ended}) with its gate closed"
        assert gate.runs == 1
    finally:
        gate.open_all()
        wait_until(lambda: gate.exit, 30, "the task to end once its gate opened")


def test_a_task_within_its_timeout_completes(client: TestClient[Any]) -> None:
    job = client.post("/jobs/?job_type=deadline", json={"seconds": 0.1}).json()
    done = wait_for(client, job["id"], timeout=30)
    assert done["status"] == "completed", done


def test_a_job_past_its_deadline_fails_naming_the_step_and_the_limit(client: TestClient[Any],
                                                                      settings: Settings) -> None:
    job = client.post("/jobs/?job_type=steps_deadline_job", json={}).json()
    first, second = (Gate(Path(settings.media_url), job["id"], node) for node in ("first", "second"))
    first.open(1)  # the first step ends at once; the second waits on its gate, past the job's deadline
    try:
        done = wait_for(client, job["id"], timeout=30)
        assert second.exit is None, f"the second step ended ({second.exit}) with its gate closed"
        assert first.exit == "finished"
        assert done["status"] == "failed", done
        assert "ran past its 1.5s limit" in done["error_message"], done
        # It names the steps still running: the second for sure (its gate is closed); the first too only
        # if it had not ended in 1.5 s, which depends on the machine's speed.
        running = done["error_message"].split("while running ", 1)[1].split(";", 1)[0].split(", ")
        assert "second" in running and set(running) <= {"first", "second"}, done
        assert _seconds(done) >= 1.5, done
    finally:
        second.open_all()
        wait_until(lambda: second.exit, 30, "the second step to end once its gate opened")
    quick = wait_for(client, client.post("/jobs/?job_type=deadline_job", json={"seconds": 0.2}).json()["id"])
    assert quick["status"] == "completed", quick
