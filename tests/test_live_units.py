"""Live updates, webhooks and the CLI, piece by piece: the SSRF guard as a function, signatures, retry
delays, the ETA, change notifications in the store, the hub's queues, DAG drawings and ``ave graphs``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from scheduler.dispatch.eta import EtaEstimator
from scheduler.notify.events import LiveMessage, Subscription
from scheduler.settings import Settings
from scheduler.notify.webhook_guard import CallbackURLError, address_allowed, check_callback_url, sign, verify
from scheduler.notify.webhooks import retry_delay
from server.app import create_app

TEST_GRAPHS = Path(__file__).resolve().parent / "graphs"


# -- the SSRF guard ------------------------------------------------------------------------
REFUSED = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.0.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "0.0.0.0", "0.1.2.3", "224.0.0.1",
    "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
    "::", "::1", "fe80::1", "fe80::1234:5678", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:10.0.0.1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::", "2002:7f00:1::", "64:ff9b::a00:1",
    "64:ff9b::7f00:1", "2001:db8::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111",
           "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_guard_refuses_loopback_private_link_local_and_reserved(address: str) -> None:
    assert address_allowed(address) is False
    assert address_allowed(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_guard_allows_global_addresses(address: str) -> None:
    assert address_allowed(address) is True


def test_guard_on_urls_with_literal_addresses() -> None:
    """IP literals in every spelling the resolver accepts are parsed locally (no lookup, no traffic)."""
    async def check(url: str, allow_private: bool = False) -> str:
        return await check_callback_url(url, allow_private=allow_private)

    for url in ("http://10.0.0.1/hook", "https://169.254.169.254/latest/meta-data", "http://[fe80::1]:8080/",
                "http://[fd00::5]/", "http://192.168.0.10:9000/x", "http://0x7f.1/", "http://2130706433/",
                "http://127.1/", "http://[::ffff:10.1.2.3]/", "http://0/"):
        with pytest.raises(CallbackURLError, match="refused"):
            asyncio.run(check(url))
    assert asyncio.run(check("https://8.8.8.8/hook")) == "https://8.8.8.8/hook"
    assert asyncio.run(check("http://10.0.0.1/hook", allow_private=True)) == "http://10.0.0.1/hook"
    for url, message in (("ftp://8.8.8.8/", "http or https"), ("http:///path", "no host"),
                         ("http://8.8.8.8:99999/", "not a valid URL"), ("x" * 3000, "at most")):
        with pytest.raises(CallbackURLError, match=message):
            asyncio.run(check(url))


def test_api_refuses_loopback_callbacks_without_allow_private(settings: Settings) -> None:
    """Through the API, only loopback spellings: each is a 422 on callback_url, and no job is created."""
    strict = settings.model_copy(update={"webhook_secret": "s", "webhook_allow_private": False})
    with TestClient(app=create_app(strict), timeout=30) as client:
        for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook",
                    "http://2130706433:9/hook"):
            response = client.post("/jobs/", params={"job_type": "sleepy", "callback_url": url}, json={})
            assert response.status_code == 422, (url, response.text)
            error = response.json()["detail"][0]
            assert error["loc"] == ["query", "callback_url"] and "refused" in error["msg"], error
        assert client.get("/jobs/").json() == []
    unsigned = settings.model_copy(update={"webhook_secret": None, "webhook_allow_private": True})
    with TestClient(app=create_app(unsigned), timeout=30) as client:
        response = client.post("/jobs/", params={"job_type": "sleepy", "callback_url": "http://127.0.0.1:9/"},
                               json={})
        assert response.status_code == 422 and "WEBHOOK_SECRET" in response.json()["detail"][0]["msg"]
        graph = client.get("/graphs/fanout").json()
        assert graph["mermaid"].startswith("flowchart TD")
        assert "n_listed ==>|map| n_each" in graph["mermaid"] and "n_each -.->|collect| n_joined" in graph["mermaid"]
        assert {"from": "each", "to": "joined", "kind": "collect"} in graph["dag"]["edges"]


# -- signatures and retries ----------------------------------------------------------------
def test_signature_format_and_verification() -> None:
    body = b'{"event":"job.completed","job":{}}'
    header = sign("secret", body, timestamp=1_700_000_000)
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("secret", header, body, now=1_700_000_100)
    assert not verify("secret", header, body, now=1_700_000_301)  # older than 5 minutes: a replay
    assert not verify("other", header, body, now=1_700_000_000)
    assert not verify("secret", header, body + b" ", now=1_700_000_000)
    assert not verify("secret", "garbage", body)
    assert verify("secret", sign("secret", body), body)


def test_retry_delays_grow_with_jitter() -> None:
    for attempt in range(1, 8):
        nominal = 5 * 5 ** (attempt - 1)
        for _ in range(20):
            assert 0.8 * nominal <= retry_delay(attempt, base=5, factor=5) <= 1.2 * nominal
    total = sum(5 * 5 ** (n - 1) for n in range(1, 8))  # 8 attempts: 7 waits
    assert 0.5 * 86400 < total < 1.5 * 86400  # "over about a day"


# -- ETA -----------------------------------------------------------------------------------
def test_eta_needs_signal_then_follows_the_rate() -> None:
    eta = EtaEstimator()
    eta.start(0.0)
    assert eta.update(0.5, 0.05) is None  # too soon
    steady = EtaEstimator()
    steady.start(100.0)
    assert steady.update(100.2, 0.0) is None  # no progress yet
    assert steady.update(102.0, 0.2) == pytest.approx(8.0, abs=0.1)  # 10 %/s, 80 % left
    assert steady.update(104.0, 0.4) == pytest.approx(6.0, abs=0.1)
    # It slows down: the window follows the recent rate, not the whole history.
    value = None
    t, p = 104.0, 0.4
    for _ in range(40):
        t, p = t + 1, p + 0.005
        value = steady.update(t, p)
    assert value is not None and value > 60
    assert steady.update(t + 1, 1.0) == 0.0


# -- the store's notifications ---------------------------------------------------------------
def test_store_publishes_every_change_with_its_rev(redis_url: str) -> None:
    async def scenario() -> None:
        from redis import asyncio as aioredis

        from scheduler.records.jobs import JobStore

        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create("sleepy", {}, callback_url="http://127.0.0.1:9/x")
        assert "callback_url" not in job and (await store.internal(job["id"]))["callback_url"]
        pubsub = redis.pubsub()
        await pubsub.subscribe(store.channel(job["id"]))
        await pubsub.get_message(timeout=1)  # the subscription confirmation
        assert await store.claim("d1") == job["id"]
        record, rev = await store.snapshot(job["id"])
        assert rev == 1 and record["result_payload"]["eta_seconds"] is None
        assert await store.report(job["id"], progress=0.5, eta=12.34) == 2
        assert await store.report(job["id"], progress=0.4, eta=3.0) == 0  # lower progress: no change, no message
        assert await store.report(job["id"], messages=["hello"]) == 3
        record, rev = await store.snapshot(job["id"])
        assert rev == 3 and record["result_payload"]["eta_seconds"] == 12.3
        await store.cancel(job["id"], message="Cancelled by request")
        record, rev = await store.snapshot(job["id"])
        assert rev == 4 and record["status"] == "cancelled"
        assert record["result_payload"]["log"][-1]["message"] == "Cancelled by request"
        assert record["result_payload"]["eta_seconds"] is None
        got = []
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            got.append(message["data"])
        assert got == ["1 in_progress", "2 in_progress", "3 in_progress", "4 cancelled"]
        # The terminal transition enqueued the webhook in the same step.
        due = await redis.zrange("ave:webhooks:due", 0, -1)
        assert due == [f"{job['id']}.1"]
        delivery = await redis.hgetall(f"ave:webhook:{job['id']}.1")
        assert delivery["event"] == "job.cancelled" and delivery["state"] == "pending"
        assert await store.report("job_missing", messages=["x"]) == 0
        assert not await redis.exists("ave:job:job_missing")
        done = await store.create("sleepy", {})
        await store.claim("d1")
        await store.complete(done["id"], {"outputs": {}})
        assert (await store.get(done["id"]))["result_payload"]["eta_seconds"] == 0.0
        await pubsub.aclose()
        await redis.aclose()

    asyncio.run(scenario())


# -- the hub's per-client queues -------------------------------------------------------------
class _Hub:
    def _remove(self, sub: Subscription) -> None:
        pass


def test_slow_client_queue_collapses_and_keeps_the_terminal_record() -> None:
    async def scenario() -> None:
        sub = Subscription(_Hub(), "job_x", limit=3)  # type: ignore[arg-type]
        for rev in range(1, 11):
            sub.offer(LiveMessage(rev, b"{}", "in_progress"))
        sub.offer(LiveMessage(11, b"{}", "completed"))
        sub.offer(LiveMessage(11, b"{}", "completed"))  # a duplicate rev is ignored
        got = []
        while (message := await sub.get(timeout=0.01)) is not None:
            got.append(message)
        assert [m.rev for m in got] == [10, 11] and got[-1].terminal
        assert sub.coalesced == 9
        # A timed-out wait never loses a record that arrives just after.
        assert await sub.get(timeout=0.01) is None
        sub.offer(LiveMessage(12, b"{}", "completed"))
        assert (await sub.get(timeout=0.01)).rev == 12  # type: ignore[union-attr]
        sub.close()
        assert await sub.get() is None

    asyncio.run(scenario())


# -- ave graphs (offline) --------------------------------------------------------------------
def test_ave_graphs_check_reports_file_line_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    good = tmp_path / "sleepy.yaml"
    good.write_text((TEST_GRAPHS / "sleepy.yaml").read_text())
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typo\nnodes:\n  a:\n    op: util.slep\n")
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("name: syntax\nnodes:\n  a: {op: util.echo\n")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("name: cycle\nnodes:\n  a: {op: util.echo, inputs: {value: $b}}\n"
                     "  b: {op: util.echo, inputs: {value: $a}}\n")
    assert main(["graphs", "check", str(good)]) == 0
    capsys.readouterr()
    assert main(["graphs", "check", str(good), str(typo), str(syntax), str(cycle)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{typo}:4: node 'a': Unknown operator 'util.slep'. Did you mean 'util.sleep'?"
    assert lines[1].startswith(f"{syntax}:") and "invalid YAML" in lines[1]
    assert lines[2].startswith(f"{cycle}:") and "nodes form a cycle" in lines[2]
    assert len(lines) == 3
    assert main(["graphs", "check", "--json", str(typo)]) == 1
    result = json.loads(capsys.readouterr().out)
    reason = "node 'a': Unknown operator 'util.slep'. Did you mean 'util.sleep'?"
    assert result == [{"file": str(typo), "ok": False, "line": 4, "reason": reason,
                       "error": f"{typo}:4: {reason}"}]
    # Graphs that use operators of another package: --import registers them first.
    files = sorted(str(p) for p in TEST_GRAPHS.glob("*.yaml"))
    assert main(["graphs", "check", "--import", "tests.ops_testing", "--import", "tests.steps_ops", *files]) == 0


#: What ``ave graphs show tests/graphs/fanout.yaml --mermaid`` prints, written out by hand from the graph:
#: a node per step (a fan-out's in double brackets), ``==>|map|`` into a fan-out, ``-.->|collect|`` out of it.
FANOUT_MERMAID = """\
flowchart TD
  n_listed["listed<br/>util.echo"]
  n_each[["each ×N<br/>util.sleep"]]
  n_joined["joined<br/>util.echo"]
  n_listed ==>|map| n_each
  n_each -.->|collect| n_joined
  subgraph outputs [outputs]
    o_joined(["joined"])
  end
  n_joined --> o_joined
"""


def test_ave_graphs_show_draws_the_dag(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    path = TEST_GRAPHS / "fanout.yaml"
    assert main(["graphs", "show", str(path), "--mermaid"]) == 0
    out = capsys.readouterr().out
    assert out == FANOUT_MERMAID
    assert main(["graphs", "show", str(path)]) == 0
    drawing = capsys.readouterr().out
    assert "each ×N" in drawing and "⇉ fan-out over listed" in drawing and "⇶ fan-in of each" in drawing
    assert "outputs: joined ← joined" in drawing
    assert main(["graphs", "show", "ingest", "--graphs-dir", str(Path(__file__).parent.parent / "graphs")]) == 0
    drawing = capsys.readouterr().out
    assert "transcode ×N" in drawing and "then: transcribe" in drawing


def test_ave_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    for argv in ([], ["bogus"], ["submit"], ["jobs", "--status", "done"], ["graphs"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()
    assert main(["submit", "sleepy", "--payload", "/nonexistent.json", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot read the payload file" in capsys.readouterr().err
    started = time.monotonic()
    assert main(["jobs", "--url", "http://127.0.0.1:9"]) == 1  # nothing listens on port 9
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err and time.monotonic() - started < 10
