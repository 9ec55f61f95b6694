"""What a webhook may reach, and how it is signed.

- SSRF guard: a callback URL must be http(s) and every address its host resolves to must be global (not
  loopback, link-local, private, shared, reserved, multicast or unspecified, also not wrapped in IPv4-mapped,
  6to4 or NAT64 form), unless ``WEBHOOK_ALLOW_PRIVATE``.
- Signing: ``Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, and its check for receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

__all__ = [
    "MAX_URL_LENGTH",
    "RESOLVE_TIMEOUT",
    "CallbackResolveError",
    "CallbackURLError",
    "address_allowed",
    "check_callback_url",
    "parse_callback_url",
    "resolve",
    "sign",
    "verify",
]

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0


class CallbackURLError(ValueError):
    """A callback URL that is malformed, or that resolves to an address webhooks may not reach."""


class CallbackResolveError(CallbackURLError):
    """The callback host did not resolve (perhaps for now: a delivery retries it)."""


# -- the SSRF guard ------------------------------------------------------------------------
def address_allowed(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a global unicast address; False for loopback, link-local, private, shared (100.64/10),
    reserved, multicast, unspecified and documentation ranges, also when IPv4-mapped or 6to4/NAT64-wrapped."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_allowed(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            return address_allowed(ip.sixtofour)
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64: the IPv4 address in the low 32 bits
            return address_allowed(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
        return False
    return bool(ip.is_global) and not ip.is_private


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal in any spelling the resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def parse_callback_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a well-formed http(s) URL, or CallbackURLError."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise CallbackURLError(f"callback_url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackURLError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackURLError("callback_url must use http or https")
    host = parts.hostname
    if not host:
        raise CallbackURLError("callback_url has no host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except TimeoutError:
        raise CallbackResolveError(f"callback_url host {host} did not resolve in {RESOLVE_TIMEOUT:g}s") from None
    except (OSError, UnicodeError) as exc:
        raise CallbackResolveError(f"callback_url host {host} cannot be resolved: {exc}") from None
    found = []
    for info in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
    if not found:
        raise CallbackResolveError(f"callback_url host {host} resolves to no address")
    return found


async def check_callback_url(url: str, *, allow_private: bool) -> str:
    """The URL, when webhooks may POST to it: every address its host resolves to must be global."""
    _, host, port = parse_callback_url(url)
    if allow_private:
        return url
    for ip in await resolve(host, port):
        if not address_allowed(ip):
            raise CallbackURLError(
                f"callback_url {host} resolves to {ip}, a loopback, link-local, private or reserved address: "
                "refused (set WEBHOOK_ALLOW_PRIVATE=true to allow it)"
            )
    return url


# -- signing -------------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Webhook-Signature`` header value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """Check a ``Webhook-Signature`` header, refusing signatures older (or newer) than ``tolerance`` seconds."""
    try:
        items = dict(part.split("=", 1) for part in header.split(","))
        t = int(items["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, items.get("v1", ""))
