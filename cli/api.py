"""The ``ave`` command line's ground floor: exit codes, ``CliError``, output helpers, and ``Api``,
the HTTP API wrapper whose error responses become ``CliError`` (``_detail``/``check_response``)."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx loads on the first request: `ave graphs show` never needs it
    import httpx

__all__ = ["CHUNK", "DEFAULT_URL", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "TERMINAL", "Api",
           "CliError", "check_response", "fmt_eta", "fmt_size", "make_console"]

DEFAULT_URL = "http://localhost:8000"
TERMINAL = ("completed", "failed", "cancelled")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CHUNK = 1024 * 1024


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers ------------------------------------------------------------------------
def make_console(stderr: bool = True) -> Any:
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


def check_response(response: httpx.Response, what: str) -> Any:
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
        self.timeout = timeout

    @cached_property
    def client(self) -> httpx.Client:
        import httpx

        return httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=self.headers)

    def request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.base_url} ({what}): {exc}") from None
        return check_response(response, what)

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
