"""Headless Chromium driven over the DevTools protocol: open a page, wait for what its script reports.

The page sets ``window.__result`` when it is done; :func:`run_page` polls it with ``Runtime.evaluate``
and returns it, with the page's console errors. Chromium is Debian's (``make system-deps``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

__all__ = ["chromium", "run_page"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _debugging_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its debugging port")


def _page_socket(port: int, url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for target in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json():
            if target.get("type") == "page" and target.get("url", "").startswith(url.split("?")[0]):
                return str(target["webSocketDebuggerUrl"])
        time.sleep(0.1)
    raise TimeoutError(f"chromium has no page for {url}")


def run_page(url: str, timeout: float = 60) -> dict[str, Any]:
    """Open ``url`` in headless Chromium; ``window.__result`` once it is set (a TimeoutError if never)."""
    binary = chromium()
    assert binary is not None, "chromium is not installed: make system-deps"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # chromium may still write
        proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
             "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port = _debugging_port(Path(profile), proc, 30)
            with connect(_page_socket(port, url, 30), max_size=None) as socket:
                return _poll(socket, timeout)
        finally:
            proc.kill()
            proc.wait(10)


def _poll(socket: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    ask = 0
    while time.monotonic() < deadline:
        ask += 1
        socket.send(json.dumps({"id": ask, "method": "Runtime.evaluate",
                                "params": {"expression": "JSON.stringify(window.__result || null)",
                                           "returnByValue": True}}))
        while True:
            message = json.loads(socket.recv(timeout=10))
            if message.get("id") == ask:
                break
        value = message.get("result", {}).get("result", {}).get("value")
        if value and value != "null":
            return json.loads(value)  # type: ignore[no-any-return]
        time.sleep(0.25)
    raise TimeoutError("the page never reported window.__result")
