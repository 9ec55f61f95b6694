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
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from cli.api import DEFAULT_URL, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Api, CliError
from cli.commands import cmd_cancel, cmd_download, cmd_ingest, cmd_jobs, cmd_submit, cmd_watch
from cli.graphs import cmd_graphs_check, cmd_graphs_show

__all__ = ["build_parser", "main"]


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
