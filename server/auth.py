"""Bearer-token auth, and complete ``OPTIONS`` answers, as one ASGI middleware.

With tokens configured (``API_TOKENS``, ``API_TOKENS_FILE``) every HTTP route and the WebSocket need
``Authorization: Bearer <token>``, except the handlers marked public (``opt={"public": True}``: the
health probes, and ``/metrics`` with ``METRICS_PUBLIC=true``) and ``OPTIONS`` (a CORS preflight never
carries credentials). A missing or wrong token gets ``401 {"detail": ...}`` with ``WWW-Authenticate:
Bearer``; on the WebSocket the handshake itself is refused with that 401 (the ASGI denial-response
extension; a server without it gets close code 4401 instead).

The presented token is hashed (SHA-256) and compared with every configured token's hash with
:func:`hmac.compare_digest`, all of them each time: the time taken does not depend on where a
guess first differs, nor on which token matched. Tokens are never logged: only how many there are.
The matching token's hash is put in the ASGI scope (``ave.token``) to scope Idempotency-Keys per caller.

A route under ``/v1/signed/{grant}/`` (media and live updates, for what a browser cannot send a
header from) takes the grant in its path instead of the header: it must open the asset or job the
route names (:mod:`server.signing`), else ``403 {"detail": ...}`` saying why, token or not.

``OPTIONS`` is answered here, from the route's own handlers: Litestar's generated answer lists only
the methods of the first handler registered on a path (``OPTIONS /jobs`` left out ``POST``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from server.signing import GrantError, UrlSigner

__all__ = ["TOKEN_SCOPE_KEY", "RedactCredentials", "TokenAuth", "auth_middleware", "redact_log_handlers"]

TOKEN_SCOPE_KEY = "ave.token"
_BEARER = b"bearer "
_JSON = (b"content-type", b"application/json")
_MISSING = b'{"detail":"Not authenticated: send the header Authorization: Bearer <token>"}'
_INVALID = b'{"detail":"Invalid token"}'
_CHALLENGE_MISSING = b'Bearer realm="ave"'
_CHALLENGE_INVALID = b'Bearer realm="ave", error="invalid_token"'


_CREDENTIALS = re.compile(r"(?i)(authorization\W+(?:(?:bearer|basic)\s+)?|bearer\s+|basic\s+)[^\s'\",;]+")


class RedactCredentials(logging.Filter):
    """Blanks credentials in log lines: at LOG_LEVEL=debug, uvicorn's WebSocket protocol logs the
    handshake's headers, ``Authorization`` included."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a record that does not format: leave it to the handler)
            return True
        if _CREDENTIALS.search(message):
            record.msg = _CREDENTIALS.sub(lambda m: m.group(1) + "[redacted]", message)
            record.args = ()
        return True


def redact_log_handlers(*logger_names: str) -> None:
    """Put :class:`RedactCredentials` on every handler of the root logger and of ``logger_names``."""
    for name in ("", *logger_names):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, RedactCredentials) for f in handler.filters):
                handler.addFilter(RedactCredentials())


class TokenAuth:
    """The configured tokens, as SHA-256 digests."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, presented: bytes) -> str | None:
        """The scope (hex digest prefix) of the matching token, or None; constant time in the token."""
        digest = hashlib.sha256(presented).digest()
        found: bytes | None = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        return found.hex()[:32] if found is not None else None


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return b""
    return None


def _check_grant(scope: Scope, signer: UrlSigner) -> str | None:
    """Why the path's grant does not open this request (None: it does)."""
    params = scope.get("path_params") or {}
    if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
        return "A signed URL only reads"
    kind, resource = ("a", params["asset_id"]) if "asset_id" in params else ("j", params.get("job_id"))
    if resource is None:
        return "A signed URL opens one asset or one job"
    try:
        signer.check(str(params["grant"]), kind, str(resource))  # type: ignore[arg-type]
    except GrantError as exc:
        return str(exc)
    return None


def auth_middleware(auth: TokenAuth, allow: dict[str, str], signer: UrlSigner | None = None) -> Any:
    """The middleware factory for ``Litestar(middleware=[...])``.

    ``allow`` maps a route's path template to its ``Allow`` value (filled in by the app once its
    routes exist).
    """

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            kind = scope["type"]
            if kind == "http" and scope["method"] == "OPTIONS":
                methods = allow.get(scope.get("path_template", ""))  # type: ignore[arg-type]
                if methods is not None:
                    await send({"type": "http.response.start", "status": 204,
                                "headers": [(b"allow", methods.encode()), (b"content-length", b"0")]})
                    await send({"type": "http.response.body", "body": b""})
                    return
                await app(scope, receive, send)
                return
            if signer is not None and kind in ("http", "websocket") and "grant" in (scope.get("path_params") or {}):
                problem = _check_grant(scope, signer)
                if problem is not None:
                    await _forbid(scope, send, problem)
                    return
                await app(scope, receive, send)
                return
            if not auth.enabled or kind not in ("http", "websocket"):
                await app(scope, receive, send)
                return
            handler = scope.get("route_handler")
            if handler is not None and handler.opt.get("public"):
                await app(scope, receive, send)
                return
            token = _bearer(scope["headers"])
            matched = auth.check(token) if token else None
            if matched is None:
                await _refuse(scope, send, missing=token is None)
                return
            scope[TOKEN_SCOPE_KEY] = matched  # type: ignore[literal-required]
            await app(scope, receive, send)

        return middleware

    return factory


async def _forbid(scope: Scope, send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    await _deny(scope, send, 403, body, [_JSON, (b"content-length", str(len(body)).encode())], 4403, detail)


async def _refuse(scope: Scope, send: Send, *, missing: bool) -> None:
    body = _MISSING if missing else _INVALID
    headers = [_JSON, (b"content-length", str(len(body)).encode()),
               (b"www-authenticate", _CHALLENGE_MISSING if missing else _CHALLENGE_INVALID)]
    await _deny(scope, send, 401, body, headers, 4401, "Not authenticated" if missing else "Invalid token")


async def _deny(scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                close_code: int, reason: str) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": close_code, "reason": reason.encode()[:120].decode(errors="ignore")})
