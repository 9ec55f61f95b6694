"""Signed URLs: what a browser's ``<video>``, ``<img>``, hls.js, ``EventSource`` and ``WebSocket`` use
when the API needs a bearer token they cannot send.

A *grant* is one path segment, ``<expires>-<kind>-<signature>``: ``kind`` is ``a`` (an asset: its
bytes and, for an HLS master playlist, every file of its package) or ``j`` (a job's live updates);
``expires`` is a Unix time; the signature is HMAC-SHA256 over ``kind``, the resource's id and
``expires``, 128 bits in base64url. The grant sits in the path, not the query, so that the relative
URIs inside an HLS playlist (``720p/index.m3u8``) resolve under it and stay signed: a player drops
a query string when it resolves a relative URI.

The key is ``URL_SIGNING_SECRET`` or, unset, derived from the API tokens (every server of a
deployment then signs alike; changing the tokens revokes every URL). With no tokens the API is open
anyway and a grant opens nothing its plain URL does not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["GrantError", "SignedGrant", "UrlSigner"]

Kind = Literal["a", "j"]
_KINDS: dict[str, str] = {"a": "asset", "j": "job"}


class GrantError(Exception):
    """A grant that does not open what it was presented for; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class SignedGrant:
    kind: Kind
    resource_id: str
    expires: int


class UrlSigner:
    """Makes and checks grants with one key."""

    def __init__(self, secret: str | None, tokens: list[str]) -> None:
        if secret:
            material = b"secret\0" + secret.encode()
        else:
            digests = sorted(hashlib.sha256(t.encode()).digest() for t in tokens)
            material = b"tokens\0" + b"".join(digests)
        self._key = hashlib.sha256(b"ave signed urls\0" + material).digest()

    def _signature(self, kind: str, resource_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{kind}\0{resource_id}\0{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()

    def grant(self, kind: Kind, resource_id: str, expires: int) -> str:
        return f"{expires}-{kind}-{self._signature(kind, resource_id, expires)}"

    def check(self, grant: str, kind: Kind, resource_id: str, now: float | None = None) -> SignedGrant:
        """The grant, if it opens ``kind`` ``resource_id`` now; else :class:`GrantError`."""
        expires_text, _, rest = grant.partition("-")
        granted, _, signature = rest.partition("-")
        if not expires_text.isdigit() or granted not in _KINDS or not signature:
            raise GrantError("Not a signed URL: ask POST /v1/signed-urls for one")
        expires = int(expires_text)
        if not hmac.compare_digest(signature, self._signature(granted, resource_id, expires)) or granted != kind:
            raise GrantError(f"This signed URL does not open {_KINDS[kind]} {resource_id} (a changed URL, another "
                             "resource's, or a server whose signing key changed): ask POST /v1/signed-urls for a new one")
        if (time.time() if now is None else now) >= expires:
            raise GrantError(f"This signed URL expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}: "
                             "ask POST /v1/signed-urls for a new one")
        return SignedGrant(granted, resource_id, expires)  # type: ignore[arg-type]
