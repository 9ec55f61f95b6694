"""Following a job to its end: ``Reporter`` (rich bars on a terminal, plain lines in a pipe), the
WebSocket ``/ws/jobs/{id}`` with a polling fallback, Ctrl-C asking whether to cancel, and
``print_result`` for the finished record."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from cli.api import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TERMINAL, Api, CliError, fmt_eta, fmt_size, make_console

__all__ = ["Reporter", "follow", "print_result"]


# -- following a job -----------------------------------------------------------------------
class Reporter:
    """Shows a job's progress: a rich bar on a terminal, plain lines otherwise, nothing when quiet."""

    def __init__(self, *, tty: bool, quiet: bool = False) -> None:
        self.tty = tty
        self.quiet = quiet
        self.console = make_console()
        self._live: Any = None
        self._progress: Any = None
        self._task: Any = None
        self._log_text: Any = None
        self._status: str | None = None
        self._log_count = 0
        self._step = -1
        self.job_id = ""

    def start(self, job_id: str, job_type: str = "") -> None:
        self.job_id = job_id
        self._status, self._log_count, self._step = None, 0, -1
        if self.quiet:
            return
        if not self.tty:
            print(f"{job_id}: following {job_type}".rstrip(), file=sys.stderr, flush=True)
            return
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn
        from rich.text import Text

        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("ETA {task.fields[eta]}"), TextColumn("[dim]{task.fields[status]}"),
            console=self.console, auto_refresh=False,
        )
        self._task = self._progress.add_task(job_type or job_id, total=100, eta="–", status="connecting")
        self._log_text = Text("", style="dim", overflow="ellipsis", no_wrap=True)
        self._live = Live(Group(self._progress, self._log_text), console=self.console, refresh_per_second=10,
                          transient=False)
        self._live.start()

    def update(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        result = record.get("result_payload") or {}
        progress = float(result.get("progress") or 0)
        eta = result.get("eta_seconds")
        log = result.get("log") or []
        status = record.get("status", "")
        if self.tty and self._progress is not None:
            self._progress.update(self._task, completed=progress * 100, eta=fmt_eta(eta), status=status)
            if log:
                self._log_text.plain = f"  {log[-1].get('message', '')}"
            if record.get("error_message"):
                self._log_text.plain = f"  {record['error_message']}"
            self._progress.refresh()
            if self._live is not None:
                self._live.refresh()
            return
        out = sys.stderr
        if status != self._status:
            print(f"{self.job_id}: {status}", file=out, flush=True)
            self._status = status
        if len(log) > self._log_count or (log and self._log_count > len(log)):
            new = log[self._log_count:] if len(log) > self._log_count else log[-1:]
            for entry in new:
                print(f"  {entry.get('timestamp', '')[11:19]}  {entry.get('message', '')}", file=out, flush=True)
            self._log_count = len(log)
        step = int(progress * 10)
        if status == "in_progress" and step > self._step:
            self._step = step
            print(f"  progress {progress * 100:3.0f}%  eta {fmt_eta(eta)}", file=out, flush=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._progress = None


async def _follow_ws(api: Api, job_id: str, reporter: Reporter, *, retries: int = 20) -> dict[str, Any]:
    """Follow over the WebSocket until the terminal record; reconnect when the connection drops
    (each reconnect starts with the current record); poll when WebSockets do not work at all."""
    import websockets

    url = f"{api.ws_base}/ws/jobs/{job_id}"
    last: dict[str, Any] | None = None
    failures = 0
    delay = 0.5
    while True:
        try:
            async with websockets.connect(url, open_timeout=10, max_size=64 * 1024 * 1024,
                                          ping_interval=20, ping_timeout=60,
                                          additional_headers=api.headers or None) as ws:
                failures, delay = 0, 0.5
                try:
                    async for raw in ws:
                        last = json.loads(raw)
                        reporter.update(last)
                        if last.get("status") in TERMINAL:
                            return last
                except websockets.ConnectionClosed:
                    pass
                if ws.close_code == 4404:
                    raise CliError(ws.close_reason or f"Job {job_id} not found")
                if last is not None and last.get("status") in TERMINAL:
                    return last
        except CliError:
            raise
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI, TimeoutError, asyncio.TimeoutError):
            failures += 1
            if failures > retries:
                return await _follow_poll(api, job_id, reporter)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _follow_poll(api: Api, job_id: str, reporter: Reporter, interval: float = 1.0) -> dict[str, Any]:
    while True:
        record = await asyncio.to_thread(api.request, "GET", f"/jobs/{job_id}", "watch")
        reporter.update(record)
        if record.get("status") in TERMINAL:
            return record
        await asyncio.sleep(interval)


def _ask_cancel(api: Api, job_id: str) -> None:
    """After Ctrl-C: on a terminal, ask whether to cancel the job; elsewhere, say how to."""
    from rich.text import Text

    console = make_console()
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            console.print(f"\nCancel job {job_id}? [y/N] ", end="", markup=False)
            answer = sys.stdin.readline().strip().lower()
        except (KeyboardInterrupt, EOFError):
            answer = ""
        if answer in ("y", "yes"):
            try:
                record = api.request("POST", f"/jobs/{job_id}/cancel", "cancel")
                console.print(f"{job_id}: {record['status']}")
            except CliError as exc:
                console.print(Text(str(exc), style="red"))
            return
    console.print(f"\nJob {job_id} keeps running; cancel it with: ave cancel {job_id}")


def follow(api: Api, job_id: str, *, as_json: bool, chain: bool = True) -> int:
    """Follow a job (and the jobs it chains) to the end; print outputs; return the exit code."""
    tty = sys.stderr.isatty()
    reporter = Reporter(tty=tty, quiet=as_json and not tty)
    pending = [job_id]
    code = EXIT_OK
    while pending:
        current = pending.pop(0)
        first = api.request("GET", f"/jobs/{current}", "watch")
        reporter.start(current, first.get("job_type", ""))
        try:
            record = asyncio.run(_follow_ws(api, current, reporter))
        except KeyboardInterrupt:
            reporter.stop()
            _ask_cancel(api, current)
            return EXIT_INTERRUPTED
        finally:
            reporter.stop()
        print_result(api, record, as_json=as_json)
        if record["status"] != "completed":
            code = EXIT_FAILED
        elif chain:
            chained = (record.get("result_payload") or {}).get("chained_jobs") or {}
            for ids in chained.values():
                pending.extend(ids if isinstance(ids, list) else [ids])
    return code


def _asset_rows(name: str, value: Any) -> list[tuple[str, str, str, str]]:
    if isinstance(value, dict) and "id" in value and "url" in value:
        return [(name, str(value.get("kind") or value.get("content_type") or ""), fmt_size(value.get("size")),
                 value["url"])]
    if isinstance(value, list) and value and all(isinstance(v, dict) and "url" in v for v in value):
        rows = []
        for i, v in enumerate(value):
            rows += _asset_rows(f"{name}[{i}]", v)
        return rows
    if value is None:
        return [(name, "null", "", "")]
    text = json.dumps(value, separators=(",", ":"), default=str)
    return [(name, "value", "", text if len(text) <= 60 else text[:57] + "...")]


def print_result(api: Api, record: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
        return
    from rich.table import Table
    from rich.text import Text

    console = make_console(stderr=False)
    status = record["status"]
    style = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(status, "")
    took = ""
    if record.get("started_at") and record.get("completed_at"):
        from datetime import datetime

        seconds = (datetime.fromisoformat(record["completed_at"]) - datetime.fromisoformat(record["started_at"]))
        took = f" in {seconds.total_seconds():.1f}s"
    console.print(f"[{style}]{record['id']} {record['job_type']} {status}{took}[/]" if style else
                  f"{record['id']} {record['job_type']} {status}{took}")
    if record.get("error_message"):
        console.print(f"  error: {record['error_message']}", markup=False)
    result = record.get("result_payload") or {}
    outputs = result.get("outputs") or {}
    if outputs:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("output", "kind", "size", "download"):
            table.add_column(column, no_wrap=column != "kind")
        for name, value in outputs.items():
            for out, kind, size, url in _asset_rows(name, value):
                cells = (out, kind, size, api.absolute(url) if url.startswith("/") else url)
                table.add_row(*(Text(c) for c in cells))
        console.print(table)
    for job_type, ids in (result.get("chained_jobs") or {}).items():
        for chained in ids if isinstance(ids, list) else [ids]:
            console.print(f"  chained {job_type} job: {chained}")
