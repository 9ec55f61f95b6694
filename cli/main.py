"""``ave``: the command line of the AI video editor backend.

It talks to ``AVE_URL`` (default ``http://localhost:8000``) with httpx, follows jobs over the
WebSocket ``/ws/jobs/{id}`` (falling back to polling), and checks and draws graph files offline
with the server's own loader. Progress goes to stderr (rich bars on a terminal, plain lines in a
pipe); results go to stdout, as JSON with ``--json``.

Exit codes: 0 completed (or done), 1 failed / cancelled / an error, 2 a usage error (or a request
the server refused as invalid, 422), 130 interrupted with Ctrl-C (which asks whether to cancel).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mimetypes
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

__all__ = ["main"]

DEFAULT_URL = "http://localhost:8000"
TERMINAL = ("completed", "failed", "cancelled")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CHUNK = 1024 * 1024


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers ------------------------------------------------------------------------
def _console(stderr: bool = True) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (a pipe, a file): wide enough that no id or URL is ever folded.
    width = None if stream.isatty() else 240
    return Console(stderr=stderr, highlight=False, width=width)


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def fmt_size(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:300] or f"HTTP {response.status_code}"
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail if isinstance(e, dict))
    return str(detail)


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        code = EXIT_USAGE if response.status_code in (400, 422) else EXIT_FAILED
        raise CliError(f"{what}: {response.status_code} {_detail(response)}", code)
    return response.json() if response.content else None


class Api:
    """The HTTP API, with errors turned into CliError."""

    def __init__(self, base_url: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        #: ``Authorization: Bearer <token>`` for a server with API tokens (``--token`` or ``$AVE_TOKEN``).
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self.headers)

    def request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.base_url} ({what}): {exc}") from None
        return _check(response, what)

    def absolute(self, url: str | None) -> str:
        if not url:
            return ""
        return url if "://" in url else f"{self.base_url}{url}"

    @property
    def ws_base(self) -> str:
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url[len("https://"):]
        if self.base_url.startswith("http://"):
            return "ws://" + self.base_url[len("http://"):]
        return self.base_url


# -- following a job -----------------------------------------------------------------------
class Reporter:
    """Shows a job's progress: a rich bar on a terminal, plain lines otherwise, nothing when quiet."""

    def __init__(self, *, tty: bool, quiet: bool = False) -> None:
        self.tty = tty
        self.quiet = quiet
        self.console = _console()
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

    console = _console()
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

    console = _console(stderr=False)
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


# -- commands ------------------------------------------------------------------------------
def _read_payload(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read the payload file {path}: {exc.strerror}", EXIT_USAGE) from None
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{path} is not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(payload, dict):
        raise CliError(f"{path}: the payload must be a JSON object", EXIT_USAGE)
    return payload


def _submit(api: Api, job_type: str, payload: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"job_type": job_type, "priority": args.priority}
    if getattr(args, "clip_version", None):
        params["clip_version_id"] = args.clip_version
    if getattr(args, "callback_url", None):
        params["callback_url"] = args.callback_url
    return api.request("POST", "/jobs/", f"submit {job_type}", params=params, json=payload)


def cmd_submit(api: Api, args: argparse.Namespace) -> int:
    payload = _read_payload(args.payload) if args.payload else {}
    record = _submit(api, args.job_type, payload, args)
    if args.follow:
        if not args.json:
            _console().print(f"submitted {record['id']}")
        return follow(api, record["id"], as_json=args.json)
    if args.json:
        print(json.dumps(record))
    else:
        print(record["id"])
    return EXIT_OK


def _upload(api: Api, path: Path, project: str, *, show: bool) -> dict[str, Any]:
    size = path.stat().st_size
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    progress: Any = None
    task: Any = None
    if show:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(TextColumn("[bold]upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=_console())
        task = progress.add_task("upload", total=size)

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while data := handle.read(CHUNK):
                if progress is not None:
                    progress.advance(task, len(data))
                yield data

    ctx = progress if progress is not None else contextlib.nullcontext()
    with ctx:
        return api.request("POST", "/assets/", "upload", params={"project_id": project, "filename": path.name},
                           content=chunks(), headers={"Content-Type": content_type, "Content-Length": str(size)},
                           timeout=httpx.Timeout(30.0, write=300.0))


def cmd_ingest(api: Api, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    tty = sys.stderr.isatty()
    asset = _upload(api, path, args.project, show=tty)
    if not args.json:
        _console().print(f"uploaded {path.name} as {asset['id']} ({fmt_size(asset.get('size'))})")
    payload: dict[str, Any] = {"project_id": args.project, "source_asset_id": asset["id"], "transcript": args.transcript}
    if args.renditions:
        payload["renditions"] = args.renditions
    record = _submit(api, "ingest", payload, args)
    if args.follow:
        if not args.json:
            _console().print(f"submitted {record['id']}")
        return follow(api, record["id"], as_json=args.json)
    print(json.dumps(record) if args.json else record["id"])
    return EXIT_OK


def cmd_watch(api: Api, args: argparse.Namespace) -> int:
    return follow(api, args.job_id, as_json=args.json, chain=args.chain)


def cmd_jobs(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.type:
        params["job_type"] = args.type
    jobs = api.request("GET", "/jobs/", "list jobs", params=params)
    if args.json:
        print(json.dumps(jobs))
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "type", "status", "progress", "priority", "created", "error"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "created"))
    for job in jobs:
        result = job.get("result_payload") or {}
        progress = f"{float(result.get('progress') or 0) * 100:.0f}%" if result else ""
        cells = (job["id"], job["job_type"], job["status"], progress, str(job.get("priority", 0)),
                 (job.get("created_at") or "")[:19].replace("T", " "), (job.get("error_message") or "")[:60])
        table.add_row(*(Text(c) for c in cells))
    _console(stderr=False).print(table)
    return EXIT_OK


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    record = api.request("POST", f"/jobs/{args.job_id}/cancel", "cancel")
    print(json.dumps(record) if args.json else f"{record['id']}: {record['status']}")
    return EXIT_OK


def cmd_download(api: Api, args: argparse.Namespace) -> int:
    asset = api.request("GET", f"/assets/{args.asset_id}", "download")
    target = args.output or asset.get("filename") or args.asset_id
    to_stdout = target == "-"
    tty = sys.stderr.isatty() and not to_stdout
    progress: Any = None
    written = 0
    try:
        with api.client.stream("GET", f"/assets/{args.asset_id}/content", timeout=httpx.Timeout(30.0, read=300.0)) \
                as response:
            if response.status_code >= 400:
                response.read()
                _check(response, "download")
            total = int(response.headers.get("content-length") or asset.get("size") or 0) or None
            if tty:
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

                progress = Progress(TextColumn("[bold]download"), BarColumn(), DownloadColumn(),
                                    TransferSpeedColumn(), console=_console())
                progress.start()
                task = progress.add_task("download", total=total)
            out = sys.stdout.buffer if to_stdout else open(target, "wb")  # noqa: SIM115
            try:
                for block in response.iter_bytes(CHUNK):
                    out.write(block)
                    written += len(block)
                    if progress is not None:
                        progress.advance(task, len(block))
            finally:
                if not to_stdout:
                    out.close()
    except httpx.HTTPError as exc:
        raise CliError(f"cannot download {args.asset_id}: {exc}") from None
    finally:
        if progress is not None:
            progress.stop()
    if args.json:
        print(json.dumps({"asset": asset, "path": None if to_stdout else str(Path(target).resolve()),
                          "bytes": written}))
    elif not to_stdout:
        print(f"{target} ({fmt_size(written)})")
    return EXIT_OK


# -- graphs (offline) ----------------------------------------------------------------------
def _graphs_dir(args: argparse.Namespace) -> Path:
    return Path(args.graphs_dir or os.environ.get("GRAPHS_DIR") or "graphs")


def _import_modules(modules: Sequence[str]) -> None:
    import importlib

    sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001
            raise CliError(f"--import {name}: {type(exc).__name__}: {exc}", EXIT_USAGE) from None


def cmd_graphs_check(api: Api | None, args: argparse.Namespace) -> int:
    from pipelines.errors import GraphError
    from pipelines.loader import load_graph

    _import_modules(args.imports)
    files = [Path(f) for f in args.files] or sorted(_graphs_dir(args).glob("*.yaml"))
    if not files:
        raise CliError(f"no graph files given, and none in {_graphs_dir(args)}", EXIT_USAGE)
    broken = 0
    results = []
    for path in files:
        try:
            graph = load_graph(path)
        except GraphError as exc:
            broken += 1
            results.append({"file": str(path), "ok": False, "line": exc.line, "reason": exc.reason,
                            "error": str(exc)})
            if not args.json:
                print(str(exc), flush=True)
            continue
        results.append({"file": str(path), "ok": True, "name": graph.name, "nodes": len(graph.nodes)})
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{len(files)} graph file(s) checked, {broken} with errors", file=sys.stderr)
    return EXIT_FAILED if broken else EXIT_OK


def _local_graph(args: argparse.Namespace) -> Any | None:
    from pipelines.loader import load_graph

    candidate = Path(args.job_type)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        path = candidate
    else:
        path = _graphs_dir(args) / f"{args.job_type}.yaml"
        if not path.is_file():
            return None
    _import_modules(args.imports)
    return load_graph(path)


def cmd_graphs_show(api: Api, args: argparse.Namespace) -> int:
    from pipelines.errors import GraphError

    try:
        graph = _local_graph(args)
    except GraphError as exc:
        print(str(exc))
        return EXIT_FAILED
    if graph is not None:
        from scheduler.diagram import graph_dag, mermaid

        dag = graph_dag(graph)
        text = mermaid(dag)
        source = graph.file
    else:
        described = api.request("GET", f"/graphs/{args.job_type}", "graphs show")
        dag, text, source = described.get("dag"), described.get("mermaid"), api.base_url
        if dag is None or text is None:
            raise CliError(f"{api.base_url} does not describe the DAG of {args.job_type}")
    if args.mermaid:
        sys.stdout.write(text)
        return EXIT_OK
    if args.json:
        print(json.dumps(dag))
        return EXIT_OK
    draw_dag(dag, source)
    return EXIT_OK


def draw_dag(dag: dict[str, Any], source: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from scheduler.diagram import dag_lines

    console = _console(stderr=False)
    console.print(Text(dag["name"], style="bold") + Text(f"  {source}", style="dim"))
    if dag.get("description"):
        console.print(Text(" ".join(str(dag["description"]).split()), style="dim"))
    if dag.get("inputs"):
        console.print(f"inputs: {', '.join(dag['inputs'])}", markup=False)
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for column in ("layer", "node", "operator", "takes"):
        table.add_column(column, overflow="fold")
    for row in dag_lines(dag):
        table.add_row(*(Text(c) for c in row))
    console.print(table)
    if dag.get("outputs"):
        parts = [f"{o['name']} ← {', '.join(o['from']) or '(literal)'}" for o in dag["outputs"]]
        console.print("outputs: " + "; ".join(parts), markup=False)
    for chain in dag.get("then") or []:
        extra = f" for each {chain['for_each']}" if chain.get("for_each") else ""
        console.print(f"then: {chain['job_type']}{extra} (when {chain['when']})", markup=False)
    console.print("[dim]⇉ fan-out: one task per item  ⇶ fan-in: the ordered results  ← data[/]")


# -- arguments -----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"the server (default: $AVE_URL or {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help="bearer token for a server with API_TOKENS (default: $AVE_TOKEN)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")

    parser = _Parser(prog="ave", description="The AI video editor backend's command line.",
                     epilog="Exit codes: 0 completed, 1 failed, 2 usage error, 130 interrupted.")
    parser.add_argument("--url", default=None, help=f"the server (default: $AVE_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="bearer token for a server with API_TOKENS (default: $AVE_TOKEN)")
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output on stdout")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
        p.add_argument("--callback-url", help="a webhook POSTed when the job ends")
        p.add_argument("--follow", "-f", action="store_true", help="follow the job live until it ends")

    p = sub.add_parser("ingest", parents=[common], help="upload a file and ingest it")
    p.add_argument("file", help="the media file to upload")
    p.add_argument("--project", default=os.environ.get("AVE_PROJECT", "default"),
                   help="project id (default: $AVE_PROJECT or 'default')")
    p.add_argument("--transcript", action="store_true", help="also transcribe it (a chained job)")
    p.add_argument("--renditions", type=int, nargs="+", metavar="HEIGHT", help="proxy heights (default 720)")
    job_options(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("submit", parents=[common], help="submit a job")
    p.add_argument("job_type")
    p.add_argument("--payload", "-p", metavar="FILE", help="the payload JSON file ('-' for stdin)")
    p.add_argument("--clip-version", help="clip_version_id for the job")
    job_options(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("watch", parents=[common], help="follow a job live until it ends")
    p.add_argument("job_id")
    p.add_argument("--no-chain", dest="chain", action="store_false", help="do not follow the jobs it chains")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("jobs", parents=[common], help="list jobs, newest first")
    p.add_argument("--status", choices=["pending", "queued", "in_progress", "completed", "failed", "cancelled"])
    p.add_argument("--type", help="job type")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("download", parents=[common], help="download an asset")
    p.add_argument("asset_id")
    p.add_argument("-o", "--output", help="file to write ('-' for stdout; default: the asset's file name)")
    p.set_defaults(func=cmd_download)

    graphs = sub.add_parser("graphs", help="check and draw job graphs")
    gsub = graphs.add_subparsers(dest="graphs_command", metavar="COMMAND", parser_class=_Parser)
    gsub.required = True
    for name, func, text in (("check", cmd_graphs_check, "validate graph files offline (file:line: reason)"),
                             ("show", cmd_graphs_show, "draw a job type's DAG")):
        g = gsub.add_parser(name, parents=[common], help=text)
        if name == "check":
            g.add_argument("files", nargs="*", metavar="FILE", help="graph files (default: every *.yaml in the graphs dir)")
        else:
            g.add_argument("job_type", metavar="JOB_TYPE", help="a job type (the graphs dir, else the server) or a file")
            g.add_argument("--mermaid", action="store_true", help="print it as a Mermaid flowchart")
        g.add_argument("--graphs-dir", help="folder of graphs (default: $GRAPHS_DIR or ./graphs)")
        g.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import a module that registers more operators first (repeatable)")
        g.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    url = getattr(args, "url", None) or os.environ.get("AVE_URL") or DEFAULT_URL
    api = Api(url, token=getattr(args, "token", None) or os.environ.get("AVE_TOKEN") or None)
    try:
        return int(args.func(api, args))
    except CliError as exc:
        print(f"ave: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ave jobs | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_FAILED
    except ImportError as exc:  # the graph commands load the operators: a broken operator package
        print(f"ave: cannot load the operators: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"ave: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
