"""The ``ave`` commands on jobs and assets: submit, ingest (upload, then submit), watch, jobs,
cancel and download."""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.api import CHUNK, EXIT_OK, EXIT_USAGE, Api, CliError, check_response, fmt_size, make_console
from cli.follow import follow

__all__ = ["cmd_cancel", "cmd_download", "cmd_ingest", "cmd_jobs", "cmd_submit", "cmd_watch"]


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
            make_console().print(f"submitted {record['id']}")
        return follow(api, record["id"], as_json=args.json)
    if args.json:
        print(json.dumps(record))
    else:
        print(record["id"])
    return EXIT_OK


def _upload(api: Api, path: Path, project: str, *, show: bool) -> dict[str, Any]:
    import httpx  # loaded on use: the graph commands never need it

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
                            TimeRemainingColumn(), console=make_console())
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
        make_console().print(f"uploaded {path.name} as {asset['id']} ({fmt_size(asset.get('size'))})")
    payload: dict[str, Any] = {"project_id": args.project, "source_asset_id": asset["id"], "transcript": args.transcript}
    if args.renditions:
        payload["renditions"] = args.renditions
    record = _submit(api, "ingest", payload, args)
    if args.follow:
        if not args.json:
            make_console().print(f"submitted {record['id']}")
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
    make_console(stderr=False).print(table)
    return EXIT_OK


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    record = api.request("POST", f"/jobs/{args.job_id}/cancel", "cancel")
    print(json.dumps(record) if args.json else f"{record['id']}: {record['status']}")
    return EXIT_OK


def cmd_download(api: Api, args: argparse.Namespace) -> int:
    import httpx  # loaded on use: the graph commands never need it

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
                check_response(response, "download")
            total = int(response.headers.get("content-length") or asset.get("size") or 0) or None
            if tty:
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

                progress = Progress(TextColumn("[bold]download"), BarColumn(), DownloadColumn(),
                                    TransferSpeedColumn(), console=make_console())
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
